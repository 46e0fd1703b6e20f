package postgres

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// TestAppendLoggedAndChangesAfter checks the positions AppendLogged
// reports, with two stores (two nodes) appending to one document, and
// what ChangesAfter reads from them, before and after a compaction.
func TestAppendLoggedAndChangesAfter(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	a, b := openTest(t, url), openTest(t, url)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	id := wire.NewDocID()
	c := storetest.NewChanges(6, 50)

	span := func(s *Store, changes []core.Change, wantFirst, wantLast int64) {
		t.Helper()
		first, last, err := s.AppendLogged(ctx, id, changes)
		if err != nil || first != wantFirst || last != wantLast {
			t.Fatalf("AppendLogged = %d..%d, %v; want %d..%d", first, last, err, wantFirst, wantLast)
		}
	}
	span(a, c[0:2], 1, 2)
	span(b, []core.Change{c[1], c[2], c[3]}, 3, 4) // c[1] is logged already
	span(a, []core.Change{c[0], c[3]}, 5, 4)       // nothing new
	span(b, nil, 5, 4)

	tail, err := a.ChangesAfter(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tail.Snapshot != nil || tail.LastSeq != 4 || len(tail.Changes) != 3 || !bytes.Equal(tail.Changes[0], c[1].Data) {
		t.Fatalf("ChangesAfter(1): snapshot %v, last %d, %d changes", tail.Snapshot != nil, tail.LastSeq, len(tail.Changes))
	}

	// Compact through 3: after 1, the snapshot is needed; after 3, not.
	if err := a.Compact(ctx, id, []byte("snapshot"), storetest.NewHeads(1), 3); err != nil {
		t.Fatal(err)
	}
	tail, err = b.ChangesAfter(ctx, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(tail.Snapshot) != "snapshot" || len(tail.SnapshotHeads) != 1 || len(tail.Changes) != 1 || !bytes.Equal(tail.Changes[0], c[3].Data) {
		t.Fatalf("ChangesAfter(1) after compaction: snapshot %q, %d changes", tail.Snapshot, len(tail.Changes))
	}
	tail, err = b.ChangesAfter(ctx, id, 4)
	if err != nil || tail.Snapshot != nil || len(tail.Changes) != 0 || tail.LastSeq != 4 {
		t.Fatalf("ChangesAfter(4) = %+v, %v; want nothing, last 4", tail, err)
	}
	if _, err := a.ChangesAfter(ctx, wire.NewDocID(), 0); !errors.Is(err, room.ErrNotFound) {
		t.Fatalf("ChangesAfter of an unknown document: %v, want room.ErrNotFound", err)
	}
}

// TestLockCompaction checks that one node at a time holds a document's
// compaction lock, that it reads the stored snapshot's position, and that
// compacting under it works.
func TestLockCompaction(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	a, b := openTest(t, url), openTest(t, url)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	id := wire.NewDocID()
	if _, err := a.Append(ctx, id, storetest.NewChanges(4, 20)); err != nil {
		t.Fatal(err)
	}
	lock, err := a.LockCompaction(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if lock.SnapshotSeq() != 0 {
		t.Errorf("SnapshotSeq = %d before any compaction", lock.SnapshotSeq())
	}
	if _, err := b.LockCompaction(ctx, id); !errors.Is(err, room.ErrCompactionBusy) {
		t.Fatalf("second node's LockCompaction: %v, want room.ErrCompactionBusy", err)
	}
	other, err := b.LockCompaction(ctx, wire.NewDocID()) // another document: free
	if err != nil {
		t.Fatalf("LockCompaction of another document: %v", err)
	}
	other.Unlock()
	if err := lock.Compact(ctx, []byte("snap"), storetest.NewHeads(1), 3); err != nil {
		t.Fatal(err)
	}
	lock.Unlock()
	lock, err = b.LockCompaction(ctx, id)
	if err != nil {
		t.Fatalf("LockCompaction after Unlock: %v", err)
	}
	defer lock.Unlock()
	if lock.SnapshotSeq() != 3 {
		t.Errorf("SnapshotSeq = %d, want 3", lock.SnapshotSeq())
	}
}

// TestEventClaims checks that two nodes' DueEvents with claims take each
// due event once, and that a claim ends after its lease.
func TestEventClaims(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	clock := storetest.NewClock(time.Now())
	opts := []Option{WithOutbox(0), WithEventClaims(time.Minute), WithClock(clock.Now)}
	a, b := openTest(t, url, opts...), openTest(t, url, opts...)
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	for range 6 {
		if _, err := a.Append(ctx, wire.NewDocID(), storetest.NewChanges(1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	now := clock.Advance(time.Second)
	got := map[int64]int{}
	for _, s := range []*Store{a, b, a} {
		evs, err := s.DueEvents(ctx, now, 4)
		if err != nil {
			t.Fatal(err)
		}
		for i, ev := range evs {
			got[ev.ID]++
			if i > 0 && ev.ID <= evs[i-1].ID {
				t.Errorf("events out of ID order: %d after %d", ev.ID, evs[i-1].ID)
			}
			if ev.NextAttemptAt.After(now) {
				t.Errorf("event %d returned with its claim's next attempt %v", ev.ID, ev.NextAttemptAt)
			}
		}
	}
	if len(got) != 12 { // created and changed per document
		t.Errorf("%d events claimed, want 12", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %d claimed %d times", id, n)
		}
	}
	if err := a.MarkDelivered(ctx, firstKey(got), now); err != nil {
		t.Fatal(err)
	}
	// After the lease, the undelivered ones are due again.
	evs, err := b.DueEvents(ctx, now.Add(2*time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 11 {
		t.Errorf("%d events due after the lease, want 11", len(evs))
	}
}

func firstKey(m map[int64]int) int64 {
	for k := range m {
		return k
	}
	return 0
}
