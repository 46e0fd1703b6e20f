package room_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// TestReconnectResumesSyncState: a peer with storage that reconnects, even
// to a restarted server, exchanges less than one the server must meet
// afresh, because the room saved what the two share when it left. It
// matters when the reader comes back with edits of its own: the server
// cannot take the reader's heads as shared, so without a saved state its
// Bloom filter covers its whole history (510 changes), and with one only
// the 10 changes since.
func TestReconnectResumesSyncState(t *testing.T) {
	t.Parallel()
	withState := reconnectBytes(t, "storage-r")
	without := reconnectBytes(t, "")
	t.Logf("bytes the server sent on reconnect to a 500-change document, after 10 server-side changes and one offline edit: %d with its saved sync state, %d without", withState, without)
	if withState >= without {
		t.Fatalf("a resumed sync state cost %d bytes, no less than a fresh one (%d)", withState, without)
	}
}

// reconnectBytes syncs a reader with storage (or none) to a 500-change
// document, disconnects it, restarts the server, reconnects the reader with
// its own saved sync state (as stock clients with storage do), and returns
// the bytes of sync data the server sent until the two were in sync again.
func reconnectBytes(t *testing.T, storage string) int {
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	id := wire.NewDocID()
	reg := room.NewRegistry(st, room.Config{})
	w := newClient(t, reg, id, "writer")
	for i := range 500 {
		w.set(fmt.Sprint("k", i%20), i)
	}
	w.send(wire.TypeSync)
	w.untilAdvertised(w.doc.Heads()[0], 20*time.Second)
	r := newClient(t, reg, id, "reader")
	r.peer.storage = storage
	r.syncUntil(func() bool { return sameHeads(r.doc, w.doc) })
	settle(t, r)
	reg.Leave(context.Background(), id, r.peer)
	reg.Leave(context.Background(), id, w.peer)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	saved := r.ss.Save()

	reg = newRegistry(t, st, room.Config{})
	// Edits while the reader is away: the reconnect has something to do.
	for i := range 10 {
		err := reg.Do(context.Background(), id, func(doc *core.Doc, _ bool) error {
			if err := doc.Automerge().RootMap().Set("later", int64(i)); err != nil {
				return err
			}
			_, err := doc.Automerge().Commit("later")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	again := newClient(t, reg, id, "reader")
	again.peer.storage = storage
	again.doc = r.doc
	again.set("offline", "edit") // made while disconnected
	if again.ss, err = automerge.LoadSyncState(again.doc, saved); err != nil {
		t.Fatal(err)
	}
	if !again.send(wire.TypeSync) {
		t.Fatal("the reconnected reader has nothing to say")
	}
	sent := settle(t, again)
	if v, err := again.doc.Path("later").Get(); err != nil || v.Int64() != 9 {
		t.Fatalf("the reconnected reader has later=%v (%v), want the edits made while it was away", v, err)
	}
	return sent
}

// settle answers the room until it has nothing more to say, and returns
// the bytes of sync data it sent.
func settle(t *testing.T, c *client) int {
	t.Helper()
	sent := 0
	for {
		m, ok := c.next(300 * time.Millisecond)
		if !ok {
			return sent
		}
		sent += len(m.Data)
		if _, err := c.ss.ReceiveMessage(m.Data); err != nil {
			t.Fatal(err)
		}
		c.send(wire.TypeSync)
	}
}
