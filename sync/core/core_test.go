package core

import (
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// clientMessages returns the sync messages a client with a small document
// sends first, for seeds.
func clientMessages(t testing.TB) [][]byte {
	d := automerge.New()
	if err := d.RootMap().Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("c"); err != nil {
		t.Fatal(err)
	}
	srv := NewDoc()
	ss, cs := srv.NewSyncState(), automerge.NewSyncState(d)
	var out [][]byte
	for range 4 {
		m, ok := cs.GenerateMessage()
		if !ok {
			break
		}
		out = append(out, m.Bytes())
		if _, err := ss.Receive(m.Bytes()); err != nil {
			t.Fatal(err)
		}
		if r, ok := ss.Generate(); ok {
			if _, err := cs.ReceiveMessage(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func TestReceiveReturnsChangeBytesThatReload(t *testing.T) {
	d := automerge.New()
	for i := range 3 {
		if err := d.RootMap().Set("k", int64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Commit("c"); err != nil {
			t.Fatal(err)
		}
	}
	srv := NewDoc()
	ss, cs := srv.NewSyncState(), automerge.NewSyncState(d)
	var logged [][]byte
	for range 10 {
		m, ok := cs.GenerateMessage()
		if !ok {
			break
		}
		chs, err := ss.Receive(m.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range chs {
			if !srv.Has(c.Hash) {
				t.Fatalf("change %x not in the document after Receive", c.Hash)
			}
			logged = append(logged, c.Data)
		}
		if r, ok := ss.Generate(); ok {
			if _, err := cs.ReceiveMessage(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(logged) != 3 {
		t.Fatalf("%d changes logged, want 3", len(logged))
	}
	// The logged bytes alone rebuild the document, as a store's log does.
	re, err := Load(nil, logged)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(re.Heads(), hashes(d.Heads())) {
		t.Fatal("reloaded heads differ")
	}
	// And a snapshot plus nothing does too.
	re2, err := Load(srv.Save(), nil)
	if err != nil || !slices.Equal(re2.Heads(), srv.Heads()) {
		t.Fatalf("snapshot reload: %v", err)
	}
}

func TestReceiveRejectsGarbage(t *testing.T) {
	for _, in := range [][]byte{nil, {0x42}, {0x42, 0xff}, []byte("garbage"), {0x43, 0, 0}} {
		if _, err := NewDoc().NewSyncState().Receive(in); err == nil {
			t.Errorf("Receive(%x) accepted garbage", in)
		}
	}
}

func TestReceiveReadOnlyDropsChangesAndStaysQuiet(t *testing.T) {
	// The server has a document; a read-only client has it too and edits.
	server := NewDoc()
	if err := server.Automerge().RootMap().Set("k", "server"); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Automerge().Commit("s"); err != nil {
		t.Fatal(err)
	}
	client, err := automerge.Load(server.Save())
	if err != nil {
		t.Fatal(err)
	}
	if err := client.RootMap().Set("k", "client edit"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Commit("c"); err != nil {
		t.Fatal(err)
	}
	before := server.Heads()
	ss, cs := server.NewSyncState(), automerge.NewSyncState(client)
	messages, dropped := 0, false
	exchange := func() {
		for range 20 {
			progress := false
			if m, ok := cs.GenerateMessage(); ok {
				messages++
				progress = true
				d, err := ss.ReceiveReadOnly(m.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				dropped = dropped || d
			}
			if m, ok := ss.Generate(); ok {
				messages++
				progress = true
				if _, err := cs.ReceiveMessage(m); err != nil {
					t.Fatal(err)
				}
			}
			if !progress {
				return
			}
		}
	}
	exchange()
	// A Bloom filter false positive can make the client hold its change
	// back (waiting to be asked, which a read-only server never does):
	// edit again, a new draw.
	for i := 0; i < 2 && !dropped; i++ {
		messages = 0
		if err := client.RootMap().Set("again", int64(i)); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Commit("again"); err != nil {
			t.Fatal(err)
		}
		exchange()
	}
	if !dropped {
		t.Fatal("the client's change was not reported as dropped")
	}
	if !slices.Equal(server.Heads(), before) {
		t.Fatal("a read-only peer's change reached the document")
	}
	if messages > 6 {
		t.Fatalf("%d messages exchanged: the exchange with a read-only peer does not settle", messages)
	}

	// The client still receives what the server gets later.
	if err := server.Automerge().RootMap().Set("later", true); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Automerge().Commit("later"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		m, ok := ss.Generate()
		if !ok {
			break
		}
		if _, err := cs.ReceiveMessage(m); err != nil {
			t.Fatal(err)
		}
		if r, ok := cs.GenerateMessage(); ok {
			if _, err := ss.ReceiveReadOnly(r.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v, err := client.Path("later").Get(); err != nil || v.Kind() != automerge.KindBool {
		t.Fatalf("client did not receive the server's later change: %v %v", v, err)
	}
}
