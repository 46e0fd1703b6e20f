package room_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// v2Entry returns the one change entry of a V2 sync message (test-only
// parsing: automerge-go reads V1 only).
func v2Entry(t *testing.T, b []byte) []byte {
	t.Helper()
	uleb := func() uint64 {
		var v uint64
		for s := 0; ; s += 7 {
			c := b[0]
			b = b[1:]
			v |= uint64(c&0x7f) << s
			if c < 0x80 {
				return v
			}
		}
	}
	if b[0] != 0x43 {
		t.Fatalf("message type 0x%02x, want V2", b[0])
	}
	b = b[1:]
	b = b[32*uleb():] // heads
	b = b[32*uleb():] // need
	for range uleb() {
		b = b[32*uleb():]
		b = b[uleb():]
	}
	if n := uleb(); n != 1 {
		t.Fatalf("%d change entries, want 1", n)
	}
	return b[:uleb()]
}

// After a compaction, a fresh peer that reads V2 (its messages carry a
// trailer) is sent the document in one V2 message: the snapshot and the
// changes logged after it. A peer without a trailer is sent the changes.
func TestWholeDocumentForFreshV2Peer(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{CompactChanges: 250})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	for i := range 250 {
		a.set(fmt.Sprint("k", i%10), int64(i))
	}
	a.syncUntil(func() bool { return st.appends.Load() > 0 })
	// The 250 changes are compacted (off the room's turn), then one more
	// is logged after the snapshot.
	testwait.For(t, testwait.Default, "the compaction", func() bool {
		stored, err := st.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Snapshot != nil && len(stored.Changes) == 0
	})
	a.set("last", "one")
	a.syncUntil(func() bool { return st.appends.Load() > 1 })
	stored, err := st.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Snapshot == nil || len(stored.Changes) != 1 {
		t.Fatalf("snapshot %d bytes, %d logged changes", len(stored.Snapshot), len(stored.Changes))
	}

	fresh := &flagsPeer{client: newClient(t, reg, id, "peer-fresh-v2"), flags: true}
	b, _ := fresh.message()
	fresh.sendRaw(wire.TypeRequest, b)
	m, ok := fresh.next(10 * time.Second)
	if !ok || m.Type != wire.TypeSync {
		t.Fatalf("no sync message: %+v", m)
	}
	entry := v2Entry(t, m.Data)
	doc, err := automerge.Load(entry)
	if err != nil {
		t.Fatalf("the entry does not load: %v", err)
	}
	if !sameHeads(doc, a.doc) {
		t.Fatal("the entry is not the whole document")
	}
	total := 0
	chs, err := a.doc.Changes()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chs {
		total += len(c.Save())
	}
	if len(m.Data) > total/2 {
		t.Fatalf("whole-document message of %d bytes for %d bytes of changes", len(m.Data), total)
	}
	t.Logf("whole document: %d bytes (snapshot %d); the changes: %d bytes", len(m.Data), len(stored.Snapshot), total)

	plain := &flagsPeer{client: newClient(t, reg, id, "peer-fresh-v1")}
	plain.syncWith(a.doc, wire.TypeRequest) // a 0.5 core reads every message

	// A room that loads the document (another registry on the store) uses
	// the stored snapshot: its logged change follows it.
	reg2 := newRegistry(t, st, room.Config{})
	again := &flagsPeer{client: newClient(t, reg2, id, "peer-fresh-v2-reloaded"), flags: true}
	b, _ = again.message()
	again.sendRaw(wire.TypeRequest, b)
	if m, ok = again.next(10 * time.Second); !ok || m.Type != wire.TypeSync {
		t.Fatalf("no sync message after a reload: %+v", m)
	}
	if doc, err = automerge.Load(v2Entry(t, m.Data)); err != nil || !sameHeads(doc, a.doc) {
		t.Fatalf("after a reload, the entry is not the whole document (%v)", err)
	}
}
