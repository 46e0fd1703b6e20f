package postgres

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

func TestPostgresOutboxConformance(t *testing.T) {
	t.Parallel()
	for _, gc := range []bool{true, false} {
		name := map[bool]string{true: "GroupCommit", false: "TxPerAppend"}[gc]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			storetest.RunOutbox(t, storetest.OutboxHarness{
				Open: func(t *testing.T, debounce time.Duration, now func() time.Time) storetest.OutboxStore {
					return openTest(t, newTestDatabase(t), WithOutbox(debounce),
						WithClock(now), WithGroupCommit(gc))
				},
				OpenDisabled: func(t *testing.T) storetest.OutboxStore {
					return openTest(t, newTestDatabase(t), WithGroupCommit(gc))
				},
			})
		})
	}
}

// TestPostgresConformanceWithOutbox runs the room.Store suite with the
// outbox on: the events change nothing a room sees.
func TestPostgresConformanceWithOutbox(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store {
			return openTest(t, newTestDatabase(t), WithOutbox(time.Second))
		},
		Reopen: func(t *testing.T, s room.Store) room.Store {
			url := s.(*Store).connString
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, url, WithOutbox(time.Second))
		},
	})
}

// TestPostgresOutboxAtomic checks that an event is written with its change
// or not at all, alone or in a group-commit batch (which the server fails
// whole and the store then retries one Append at a time: the good ones
// must not get their events twice).
func TestPostgresOutboxAtomic(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url, WithOutbox(time.Hour), WithCommitWindow(200*time.Millisecond))
	defer s.Close()
	ctx := context.Background()
	conn := testConn(t, url)
	const noChanges, noEvents = wire.DocID("no-changes"), wire.DocID("no-events")
	for _, q := range []string{
		`ALTER TABLE changes ADD CONSTRAINT test_reject CHECK (doc_id <> '` + string(noChanges) + `')`,
		`ALTER TABLE outbox ADD CONSTRAINT test_reject CHECK (doc_id <> '` + string(noEvents) + `')`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Alone.
	for _, id := range []wire.DocID{noChanges, noEvents} {
		if _, err := s.Append(ctx, id, storetest.NewChanges(2, 10)); err == nil {
			t.Fatalf("Append to %s succeeded", id)
		}
		if _, err := s.Stat(ctx, id); !errors.Is(err, room.ErrNotFound) {
			t.Errorf("%s: Stat after a failed Append = %v, want room.ErrNotFound", id, err)
		}
		if evs := storetest.OutboxRows(t, s, id); len(evs) != 0 {
			t.Errorf("%s: a failed Append left %d events", id, len(evs))
		}
	}
	// In a batch, with a second Append to the good documents.
	const n = 20
	ids := make([]wire.DocID, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		switch ids[i] = wire.NewDocID(); i {
		case 4:
			ids[i] = noChanges
		case 13:
			ids[i] = noEvents
		}
		wg.Go(func() {
			<-start
			_, errs[i] = s.Append(ctx, ids[i], storetest.NewChanges(2, 50))
		})
	}
	close(start)
	wg.Wait()
	if st := s.Stats(); st.Retried == 0 {
		t.Errorf("stats %+v: want the batch retried one by one", st)
	}
	for i, id := range ids {
		bad := i == 4 || i == 13
		if !bad {
			storetest.AppendOne(t, s, id)
		}
		evs := storetest.OutboxRows(t, s, id)
		if bad != (errs[i] != nil) || (bad && len(evs) != 0) ||
			(!bad && (len(evs) != 2 || evs[0].Kind != webhook.Created || evs[1].Kind != webhook.Changed)) {
			t.Errorf("Append #%d (bad: %v): %v, events %+v", i, bad, errs[i], evs)
		}
	}

	// A Delete whose event fails deletes nothing.
	if _, err := conn.Exec(ctx, `ALTER TABLE outbox ADD CONSTRAINT test_no_deleted CHECK (kind <> 'deleted')`); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, ids[0]); err == nil {
		t.Fatal("Delete whose event is rejected succeeded")
	}
	if _, err := s.Load(ctx, ids[0]); err != nil {
		t.Errorf("Load after a failed Delete: %v", err)
	}
	if evs := storetest.OutboxRows(t, s, ids[0]); len(evs) != 2 || evs[1].Status() != webhook.StatusPending {
		t.Errorf("events after a failed Delete: %+v; want created and the pending changed", evs)
	}
}

// TestPostgresOutboxMigration checks that migration 0002 made the outbox
// and that a database written without the outbox works with it.
func TestPostgresOutboxMigration(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url)
	id := wire.NewDocID()
	storetest.AppendOne(t, s, id)
	s.Close()
	_, schema := pgSchemaOf(t, url)
	for _, want := range []string{"outbox.next_attempt_at timestamp with time zone  NO", "outbox_pending ON",
		"outbox_pending_changed ON", "outbox_failed ON"} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
	s = openTest(t, url, WithOutbox(time.Second))
	defer s.Close()
	storetest.AppendOne(t, s, id)
	if evs := storetest.OutboxRows(t, s, id); len(evs) != 1 || evs[0].Kind != webhook.Changed {
		t.Errorf("events once the outbox is on: %+v; want one changed", evs)
	}
}
