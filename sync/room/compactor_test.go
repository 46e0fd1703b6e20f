package room_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// slowCompactStore makes Compact wait for a gate, and records the log
// sequence each call compacts through.
type slowCompactStore struct {
	*faultyStore
	entered chan struct{}
	gate    chan struct{}
	mu      sync.Mutex
	through []int64
}

func (s *slowCompactStore) Compact(ctx context.Context, id wire.DocID, snap []byte, heads []core.Hash, through int64) error {
	s.mu.Lock()
	s.through = append(s.through, through)
	s.mu.Unlock()
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.gate
	return s.faultyStore.Compact(ctx, id, snap, heads, through)
}

func newSlowCompactStore(t *testing.T) *slowCompactStore {
	return &slowCompactStore{faultyStore: newStore(t), entered: make(chan struct{}, 1), gate: make(chan struct{})}
}

// edit makes n changes on c, each synced until st has stored it.
func (c *client) edit(st *faultyStore, prefix string, n int) {
	c.t.Helper()
	for i := range n {
		want := st.appends.Load() + 1
		c.set(fmt.Sprint(prefix, i), int64(i))
		c.syncUntil(func() bool { return st.appends.Load() == want })
	}
}

// waitForSnapshot waits until st holds a snapshot of id.
func waitForSnapshot(t *testing.T, st *faultyStore, id wire.DocID) {
	t.Helper()
	testwait.For(t, testwait.Default, "the snapshot", func() bool {
		stored, err := st.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Snapshot != nil
	})
}

// Compaction runs off the room's turn: while one is under way, the room's
// peers go on editing and syncing; the snapshot lands afterwards and
// covers what was stored when the job began.
func TestCompactionDoesNotHoldTheRoom(t *testing.T) {
	t.Parallel()
	st := newSlowCompactStore(t)
	base := st.faultyStore
	reg := newRegistry(t, st, room.Config{CompactChanges: 3})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	b := newClient(t, reg, id, "peer-b")
	a.edit(base, "k", 3)
	<-st.entered // the compactor waits in Compact
	b.edit(base, "b", 5)
	a.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
	close(st.gate)
	waitForSnapshot(t, base, id)
	st.mu.Lock()
	first := st.through[0]
	st.mu.Unlock()
	if first != 3 {
		t.Fatalf("the first compaction covered the log through %d; want 3, what was stored when it began", first)
	}
	// The room asks again past the threshold; the store ends compacted
	// through the edits, and what it holds loads as the document.
	reg2 := newRegistry(t, base, room.Config{})
	c := newClient(t, reg2, id, "peer-c")
	c.syncUntil(func() bool { return sameHeads(a.doc, c.doc) })
}

// A document whose compaction would take more than CompactMemory is not
// compacted: its changes stay logged, and it loads as ever.
func TestCompactionWithinMemoryBudget(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	// Each edit below is one op in one change; compaction is due from the
	// second, when the history's estimate is already over a budget of one.
	reg := newRegistry(t, st, room.Config{CompactChanges: 2, CompactMemory: int64(room.CompactionBytes(1, 1))})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	for i := range 6 {
		a.set(fmt.Sprint("k", i), int64(i))
		a.syncUntil(func() bool { return st.appends.Load() == int32(i+1) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil { // a drain asks for a final compaction too
		t.Fatal(err)
	}
	stored, err := st.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Snapshot != nil || len(stored.Changes) != 6 {
		t.Fatalf("snapshot %d bytes, %d changes logged; want no snapshot and all 6 logged", len(stored.Snapshot), len(stored.Changes))
	}
	reg2 := newRegistry(t, st, room.Config{})
	b := newClient(t, reg2, id, "peer-b")
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
}

// Peek reads a room's document in its turn: the heads of what peers sent,
// and whether the document exists.
func TestPeekReadsHeads(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	var heads []core.Hash
	var exists bool
	if err := reg.Peek(context.Background(), id, func(doc *core.Doc, ok bool) error {
		heads, exists = doc.Heads(), ok
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := a.doc.Heads()
	if !exists || len(heads) != len(want) || heads[0] != core.Hash(want[0]) {
		t.Fatalf("peek: exists %v, heads %x; want %x", exists, heads, want)
	}
	if err := reg.Peek(context.Background(), wire.NewDocID(), func(_ *core.Doc, ok bool) error {
		exists = ok
		return nil
	}); err != nil || exists {
		t.Fatalf("an unknown document: exists %v, err %v", exists, err)
	}
}

// A compaction that finishes while a turn waits for its append is taken in
// before the turn checks the log: the few changes stored during the job do
// not make another compaction follow it at once (with the sequence from
// before the job, the log looked as long as when the job began, plus them).
func TestNoCompactionRightAfterOne(t *testing.T) {
	t.Parallel()
	st := newSlowCompactStore(t)
	base := st.faultyStore
	reg := newRegistry(t, st, room.Config{CompactChanges: 4})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	a.edit(base, "k", 4)
	<-st.entered // compacting through 4
	a.edit(base, "during", 2)
	// The next change's turn waits in Append while the compaction ends.
	enter, appendGate := make(chan struct{}, 1), make(chan struct{})
	base.hold(enter, appendGate)
	a.set("after", true)
	a.send(wire.TypeSync)
	<-enter
	close(st.gate)
	waitForSnapshot(t, base, id)
	time.Sleep(50 * time.Millisecond) // the compactor hands the result to the room
	base.hold(nil, nil)
	close(appendGate)
	// Three changes logged since the snapshot: under the four that call for
	// a compaction.
	a.syncUntil(func() bool { return base.appends.Load() == 7 })
	time.Sleep(300 * time.Millisecond) // a compaction would have begun by now
	st.mu.Lock()
	through := append([]int64(nil), st.through...)
	st.mu.Unlock()
	if len(through) != 1 {
		t.Fatalf("compactions through %v; want one, through 4", through)
	}
}
