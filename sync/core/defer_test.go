package core

import (
	"testing"

	"github.com/automerge/automerge-go"
)

// TestDeferredRequest: a request for a document that does not exist yet
// leaves the document and the sync state without core state, and the
// requester is sent the document once it has content, as if the request
// had been received then.
func TestDeferredRequest(t *testing.T) {
	client := automerge.New()
	cs := automerge.NewSyncState(client)
	req, _ := cs.GenerateMessage()

	d := NewDoc()
	s := d.NewSyncState()
	if out, err := s.Defer(req.Bytes()); err != nil || len(out) != 0 {
		t.Fatalf("Defer: %v, %v", out, err)
	}
	if d.d != nil || s.s != nil {
		t.Fatal("a deferred request created core state")
	}
	if _, ok := s.Generate(); ok {
		t.Fatal("a message for an empty document")
	}
	if d.d != nil || s.s != nil {
		t.Fatal("Generate on a waiting requester created core state")
	}
	if _, err := s.Defer([]byte{0x42, 0xff}); err == nil {
		t.Fatal("Defer accepted garbage")
	}

	// Another peer brings the document.
	src := automerge.New()
	if err := src.RootMap().Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Commit("c"); err != nil {
		t.Fatal(err)
	}
	ss, ds := automerge.NewSyncState(src), d.NewSyncState()
	for range 10 {
		up, ok := ss.GenerateMessage()
		if ok {
			if _, err := ds.Receive(up.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		down, ok2 := ds.Generate()
		if ok2 {
			if _, err := ss.ReceiveMessage(down); err != nil {
				t.Fatal(err)
			}
		}
		if !ok && !ok2 {
			break
		}
	}
	if d.Empty() {
		t.Fatal("the document did not arrive")
	}
	// The requester now gets it, round by round.
	for range 10 {
		m, ok := s.Generate()
		if !ok {
			break
		}
		if _, err := cs.ReceiveMessage(m); err != nil {
			t.Fatal(err)
		}
		if r, ok := cs.GenerateMessage(); ok {
			if _, err := s.Receive(r.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v, err := client.RootMap().Get("k"); err != nil || v.Str() != "v" {
		t.Fatalf("the requester has %v, %v", v, err)
	}
}
