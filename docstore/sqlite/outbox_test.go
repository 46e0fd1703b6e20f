package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

func TestSQLiteOutboxConformance(t *testing.T) {
	storetest.RunOutbox(t, storetest.OutboxHarness{
		Open: func(t *testing.T, debounce time.Duration, now func() time.Time) storetest.OutboxStore {
			return openTest(t, t.TempDir(), WithOutbox(debounce), WithClock(now))
		},
		OpenDisabled: func(t *testing.T) storetest.OutboxStore { return openTest(t, t.TempDir()) },
	})
}

// TestSQLiteConformanceWithOutbox runs the room.Store suite with the outbox
// on: the events change nothing a room sees.
func TestSQLiteConformanceWithOutbox(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store { return openTest(t, t.TempDir(), WithOutbox(time.Second)) },
		Reopen: func(t *testing.T, s room.Store) room.Store {
			dir := filepath.Dir(s.(*Store).Path())
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, dir, WithOutbox(time.Second))
		},
	})
}

// sqliteReject makes the database refuse rows of table whose doc_id is id,
// with a trigger, so that a write fails halfway through its transaction.
func sqliteReject(t *testing.T, s *Store, table string, id wire.DocID) {
	t.Helper()
	name := "reject_" + table + "_" + strings.ReplaceAll(string(id), "-", "_")
	if _, err := s.db.Exec(`CREATE TRIGGER ` + name + ` BEFORE INSERT ON ` + table +
		` WHEN NEW.doc_id = '` + string(id) + `' BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END`); err != nil {
		t.Fatal(err)
	}
}

// TestSQLiteOutboxAtomic checks that an event is written with its change or
// not at all, alone or in a group-commit batch.
func TestSQLiteOutboxAtomic(t *testing.T) {
	s := openTest(t, t.TempDir(), WithOutbox(time.Second))
	defer s.Close()
	ctx := context.Background()

	// The change fails after the created event was written: neither stays.
	noChanges := wire.NewDocID()
	sqliteReject(t, s, "changes", noChanges)
	if _, err := s.Append(ctx, noChanges, storetest.NewChanges(2, 10)); err == nil {
		t.Fatal("Append of rejected changes succeeded")
	}
	if evs := storetest.OutboxRows(t, s, noChanges); len(evs) != 0 {
		t.Errorf("a failed Append left %d events", len(evs))
	}
	// The event fails: the change does not stay either.
	noEvents := wire.NewDocID()
	sqliteReject(t, s, "outbox", noEvents)
	if _, err := s.Append(ctx, noEvents, storetest.NewChanges(2, 10)); err == nil {
		t.Fatal("Append whose events are rejected succeeded")
	}
	if _, err := s.Load(ctx, noEvents); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("Load after an Append whose event failed = %v, want room.ErrNotFound", err)
	}

	// In one group-commit batch, the failing Appends fail alone.
	release, held := make(chan struct{}), make(chan struct{})
	go func() {
		_ = s.write(ctx, func(context.Context, *sql.Tx) error { close(held); <-release; return nil })
	}()
	<-held
	ids := []wire.DocID{wire.NewDocID(), noChanges, wire.NewDocID(), noEvents, wire.NewDocID()}
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { _, errs[i] = s.Append(ctx, id, storetest.NewChanges(1, 10)) })
	}
	time.Sleep(100 * time.Millisecond) // let them all queue
	close(release)
	wg.Wait()
	for i, id := range ids {
		bad := id == noChanges || id == noEvents
		evs := storetest.OutboxRows(t, s, id)
		if bad != (errs[i] != nil) || bad != (len(evs) == 0) || (!bad && len(evs) != 2) {
			t.Errorf("Append #%d (bad: %v): %v, %d events", i, bad, errs[i], len(evs))
		}
	}

	// A Delete whose event fails deletes nothing.
	id := wire.NewDocID()
	storetest.AppendOne(t, s, id)
	if _, err := s.db.Exec(`CREATE TRIGGER reject_deleted BEFORE INSERT ON outbox
		WHEN NEW.kind = 'deleted' BEGIN SELECT RAISE(ABORT, 'rejected by the test'); END`); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, id); err == nil {
		t.Fatal("Delete whose event is rejected succeeded")
	}
	if _, err := s.Load(ctx, id); err != nil {
		t.Errorf("Load after a failed Delete: %v", err)
	}
	if evs := storetest.OutboxRows(t, s, id); len(evs) != 2 || evs[1].Status() != webhook.StatusPending {
		t.Errorf("events after a failed Delete: %+v; want created and the pending changed", evs)
	}
}

// TestSQLiteOutboxMigration checks that migration 0002 made the outbox and
// that opening an outbox-less store's file with the outbox on works.
func TestSQLiteOutboxMigration(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	id := wire.NewDocID()
	storetest.AppendOne(t, s, id)
	_, schema := schemaOf(t, s.db)
	for _, want := range []string{"CREATE TABLE outbox", "outbox_pending ", "outbox_pending_changed", "outbox_failed"} {
		if !strings.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, schema)
		}
	}
	s.Close()
	s = openTest(t, dir, WithOutbox(time.Second))
	defer s.Close()
	storetest.AppendOne(t, s, id)
	if evs := storetest.OutboxRows(t, s, id); len(evs) != 1 || evs[0].Kind != webhook.Changed {
		t.Errorf("events once the outbox is on: %+v; want one changed", evs)
	}
}
