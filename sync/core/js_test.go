package core

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// jsCorpus is testdata/js-changes/corpus.json, written by
// clients/js/tools/gen-changes.mjs with @automerge/automerge 3.x.
type jsCorpus struct {
	Traces []struct {
		Seed    int      `json:"seed"`
		Changes []string `json:"changes"`
		Doc     string   `json:"doc"`
	} `json:"traces"`
}

func loadJSCorpus(t testing.TB) jsCorpus {
	t.Helper()
	b, err := os.ReadFile("testdata/js-changes/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var c jsCorpus
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Traces) == 0 {
		t.Fatal("empty corpus")
	}
	return c
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJSCorpus requires every change and document the JS implementation
// made to pass validation, through every entry point.
func TestJSCorpus(t *testing.T) {
	lim := DefaultLimits()
	total := 0
	for _, tr := range loadJSCorpus(t).Traces {
		tx := newIndex().begin()
		v := &validator{lim: &lim, level: levelFull}
		var raw [][]byte
		for i, h := range tr.Changes {
			b := unhex(t, h)
			raw = append(raw, b)
			c, err := decodeChangeChunk(b, &lim)
			if err != nil {
				t.Fatalf("trace %d change %d: decode: %v", tr.Seed, i, err)
			}
			if err := v.change(tx, c); err != nil {
				t.Fatalf("trace %d change %d: %v", tr.Seed, i, err)
			}
		}
		total += len(raw)
		doc := unhex(t, tr.Doc)
		client, err := automerge.Load(doc)
		if err != nil {
			t.Fatal(err)
		}
		heads := hashes(client.Heads())
		checkSaved(t, doc, heads)
		// The changes as a store's log, and as one sync message.
		d, err := Load(nil, raw)
		if err != nil {
			t.Fatalf("trace %d: Load: %v", tr.Seed, err)
		}
		if !slices.Equal(d.Heads(), heads) {
			t.Fatalf("trace %d: loaded heads differ", tr.Seed)
		}
		server := NewDoc()
		m := syncMessage{}
		for _, b := range raw {
			c, _ := decodeChangeChunk(b, &lim)
			m.changes = append(m.changes, c)
		}
		if _, err := server.NewSyncState().Receive(m.encode(m.changes)); err != nil {
			t.Fatalf("trace %d: Receive: %v", tr.Seed, err)
		}
		if !slices.Equal(server.Heads(), heads) {
			t.Fatalf("trace %d: received heads differ", tr.Seed)
		}
		// And synced from a client that loaded the JS document.
		synced := NewDoc()
		syncInto(t, synced, client)
		if !slices.Equal(synced.Heads(), heads) {
			t.Fatalf("trace %d: synced heads differ", tr.Seed)
		}
	}
	t.Logf("%d JS changes validated", total)
}
