package core

import (
	"bytes"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// validateHistory validates every change of d in order against a fresh
// index, at the strictest level.
func validateHistory(t testing.TB, d *automerge.Doc) int {
	t.Helper()
	chs, err := d.Changes()
	if err != nil {
		t.Fatal(err)
	}
	lim := DefaultLimits()
	tx := newIndex().begin()
	v := &validator{lim: &lim, level: levelFull}
	for i, ch := range chs {
		c, err := decodeChangeChunk(ch.Save(), &lim)
		if err != nil {
			t.Fatalf("change %d (%x): decode: %v", i, ch.Hash(), err)
		}
		if err := v.change(tx, c); err != nil {
			t.Fatalf("change %d (%x): %v", i, ch.Hash(), err)
		}
	}
	return len(chs)
}

// checkSaved checks that a saved document passes every entry point.
func checkSaved(t testing.TB, saved []byte, heads []Hash) {
	t.Helper()
	lim := DefaultLimits()
	r := &reader{b: saved}
	ch, err := readChunk(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkDocument(ch, &lim); err != nil {
		t.Fatalf("checkDocument: %v", err)
	}
	d, err := Load(saved, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(d.Heads(), heads) {
		t.Fatal("loaded heads differ")
	}
	if _, err := ChunkHashes(saved); err != nil {
		t.Fatalf("ChunkHashes: %v", err)
	}
	imp := NewDoc()
	if err := imp.Import(saved); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if !slices.Equal(imp.Heads(), heads) {
		t.Fatal("imported heads differ")
	}
}

// syncInto syncs client into server until neither has anything to say, and
// fails on any refused message.
func syncInto(t testing.TB, server *Doc, client *automerge.Doc) {
	t.Helper()
	ss, cs := server.NewSyncState(), automerge.NewSyncState(client)
	for range 100 {
		progress := false
		if m, ok := cs.GenerateMessage(); ok {
			progress = true
			if _, err := ss.Receive(m.Bytes()); err != nil {
				t.Fatalf("server refused a client's message: %v", err)
			}
		}
		if m, ok := ss.Generate(); ok {
			progress = true
			if _, err := cs.ReceiveMessage(m); err != nil {
				t.Fatal(err)
			}
		}
		if !progress {
			return
		}
	}
	t.Fatal("sync did not settle")
}

func TestDifferentialAutomergeGo(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 5
	}
	total := 0
	for seed := range uint64(seeds) {
		tr := newTracer(seed, 1+int(seed%4))
		if err := tr.run(30 + int(seed%5)*20); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		t.Logf("seed %d", seed)
		for i, d := range tr.docs {
			total += validateHistory(t, d)
			if i == 0 {
				checkSaved(t, d.Save(), hashes(d.Heads()))
			}
		}
		server := NewDoc()
		for _, d := range tr.docs {
			syncInto(t, server, d)
		}
		if !slices.Equal(server.Heads(), hashes(tr.docs[0].Heads())) {
			t.Fatalf("seed %d: server heads differ after sync", seed)
		}
		if server.Pending() != 0 {
			t.Fatalf("seed %d: %d changes still held", seed, server.Pending())
		}
		// The server's own snapshot round-trips too.
		checkSaved(t, server.Save(), server.Heads())
		if !bytes.Equal(server.Save(), server.Automerge().Save()) {
			t.Fatal("Save appended held changes with none held")
		}
	}
	t.Logf("%d changes validated", total)
}
