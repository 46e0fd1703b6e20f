package room_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Rooms build a core document only for the HTTP API, and the cores they
// hold stay within CoreMemory: past it, the longest unused is released (its
// document stays, as its changes), and the next operation builds it again.
func TestCoreMemoryBudget(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	// Each document below has 10 ops: the budget holds one core of them.
	reg := newRegistry(t, st, room.Config{CoreMemory: 15 * room.CoreBytesPerOp})
	ctx := context.Background()
	ids := []wire.DocID{wire.NewDocID(), wire.NewDocID()}
	for _, id := range ids {
		a := newClient(t, reg, id, "peer-"+string(id))
		for i := range 10 {
			a.set(fmt.Sprint("k", i), int64(i))
		}
		a.syncUntil(func() bool {
			var n int
			_ = reg.Peek(ctx, id, func(doc *core.Doc, _ bool) error { n = len(doc.Heads()); return nil })
			return n == 1 && sameHeadsPeek(t, reg, id, a.doc)
		})
	}
	materialized := func(id wire.DocID) bool {
		var m bool
		if err := reg.Peek(ctx, id, func(doc *core.Doc, _ bool) error { m = doc.Materialized(); return nil }); err != nil {
			t.Fatal(err)
		}
		return m
	}
	read := func(id wire.DocID) int {
		var n int
		if err := reg.Do(ctx, id, func(doc *core.Doc, _ bool) error {
			n = doc.Automerge().RootMap().Len()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if materialized(ids[0]) || materialized(ids[1]) {
		t.Fatal("a room that only relayed changes holds a core document")
	}
	if n := read(ids[0]); n != 10 || !materialized(ids[0]) {
		t.Fatalf("first document: %d keys, materialized %v", n, materialized(ids[0]))
	}
	if n := read(ids[1]); n != 10 || !materialized(ids[1]) {
		t.Fatalf("second document: %d keys", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for materialized(ids[0]) {
		if time.Now().After(deadline) {
			t.Fatal("the longest unused core was not released")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Released, the document is whole, and an edit through the API works.
	if err := reg.Do(ctx, ids[0], func(doc *core.Doc, _ bool) error {
		if err := doc.Automerge().RootMap().Set("after", "release"); err != nil {
			return err
		}
		_, err := doc.Automerge().Commit("edit")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if n := read(ids[0]); n != 11 {
		t.Fatalf("after release and an edit: %d keys, want 11", n)
	}
	// A budget smaller than one core: released as soon as the call is done.
	small := newRegistry(t, st, room.Config{CoreMemory: 1})
	var n int
	if err := small.Do(ctx, ids[1], func(doc *core.Doc, _ bool) error { n = doc.Automerge().RootMap().Len(); return nil }); err != nil || n != 10 {
		t.Fatalf("over the budget alone: %d keys, %v", n, err)
	}
	if err := small.Peek(ctx, ids[1], func(doc *core.Doc, _ bool) error {
		if doc.Materialized() {
			return fmt.Errorf("a core over the budget is kept")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func sameHeadsPeek(t *testing.T, reg *room.Registry, id wire.DocID, d *automerge.Doc) bool {
	var heads []core.Hash
	_ = reg.Peek(context.Background(), id, func(doc *core.Doc, _ bool) error { heads = doc.Heads(); return nil })
	want := d.Heads()
	return len(heads) == len(want) && len(want) > 0 && heads[0] == core.Hash(want[0])
}
