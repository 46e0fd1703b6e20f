package room_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// A quiet room parks: it stays in memory with its peers, without a
// goroutine; a message wakes it, and the registry's drain compacts it.
// Not parallel: it counts the process's goroutines.
func TestQuietRoomsParkWithoutGoroutines(t *testing.T) {
	st := newStore(t)
	reg := room.NewRegistry(st, room.Config{})
	base := runtime.NumGoroutine()
	const rooms = 40
	ids := make([]wire.DocID, rooms)
	clients := make([]*client, rooms)
	for i := range ids {
		ids[i] = wire.NewDocID()
		clients[i] = newClient(t, reg, ids[i], "peer")
		clients[i].set("n", int64(i))
		n := st.appends.Load()
		clients[i].syncUntil(func() bool { return st.appends.Load() > n })
	}
	testwait.For(t, testwait.Default, "the quiet rooms to park", func() bool {
		return runtime.NumGoroutine()-base < rooms/2
	})
	if reg.Len() != rooms {
		t.Fatalf("%d rooms in memory, want %d", reg.Len(), rooms)
	}
	// A parked room with a peer wakes for the next message and fans out.
	other := newClient(t, reg, ids[7], "other")
	other.syncUntil(func() bool { return sameHeads(other.doc, clients[7].doc) })
	other.set("late", "edit")
	n := st.appends.Load()
	other.syncUntil(func() bool { return st.appends.Load() > n })
	clients[7].syncUntil(func() bool { return sameHeads(other.doc, clients[7].doc) })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []wire.DocID{ids[0], ids[7]} {
		stored, err := st.Load(context.Background(), id)
		if err != nil || stored.Snapshot == nil || len(stored.Changes) != 0 {
			t.Fatalf("after the drain: snapshot %d bytes, %d changes logged, err %v; want a compacted document",
				len(stored.Snapshot), len(stored.Changes), err)
		}
	}
}
