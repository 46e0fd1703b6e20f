package core

import (
	"bytes"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// The core is Rust behind cgo, built with panic=abort: a panic in it kills
// the whole server. The fuzz targets feed it peers' sync messages, change
// bodies, document chunks and import bodies through the validator, and
// exercise whatever passes (the next sync message, save and reload, reading
// every value); they must only ever see errors.

// fuzzLimits keep each input's work small, so that the fuzzer spends its
// time on variety (the defaults are exercised by the other tests).
var fuzzLimits = Limits{
	MaxOpsPerChange: 1 << 10, MaxPredsPerOp: 16, MaxOpsPerMessage: 1 << 11, MaxDocumentOps: 1 << 12,
	MaxDecompressedBytes: 1 << 20, MaxPendingChanges: 64, MaxPendingBytes: 1 << 20, MaxKeyWork: 1 << 16,
}

const (
	fuzzActorA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	fuzzActorB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// fuzzBase returns a document with one of each kind of object, by actor A.
func fuzzBase(t testing.TB) *automerge.Doc {
	d := automerge.New()
	if err := d.SetActorID(fuzzActorA); err != nil {
		t.Fatal(err)
	}
	root := d.RootMap()
	m := automerge.NewMap()
	l := automerge.NewList()
	for _, kv := range []struct {
		k string
		v any
	}{{"m", m}, {"l", l}, {"t", automerge.NewText("hi")}, {"c", automerge.NewCounter(1)}, {"s", "str"}} {
		if err := root.Set(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(int64(1), "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("base"); err != nil {
		t.Fatal(err)
	}
	return d
}

// fuzzEdits returns changes by actor B on top of base, one per kind of edit.
func fuzzEdits(t testing.TB, base *automerge.Doc) [][]byte {
	var out [][]byte
	edits := []func(d *automerge.Doc) error{
		func(d *automerge.Doc) error { return at(d, "m").Map().Set("k", "w") },
		func(d *automerge.Doc) error { return at(d, "m").Map().Delete("k") },
		func(d *automerge.Doc) error { return at(d, "l").List().Insert(1, "y", int64(2)) },
		func(d *automerge.Doc) error { return at(d, "l").List().Set(0, 3.5) },
		func(d *automerge.Doc) error { return at(d, "l").List().Delete(0) },
		func(d *automerge.Doc) error { return at(d, "t").Text().Splice(1, 1, "ey") },
		func(d *automerge.Doc) error { return at(d, "c").Counter().Inc(5) },
		func(d *automerge.Doc) error { return d.RootMap().Set("n", automerge.NewList()) },
		func(d *automerge.Doc) error { return d.RootMap().Set("b", []byte{1, 2}) },
	}
	for _, edit := range edits {
		d, err := base.Fork()
		if err != nil {
			t.Fatal(err)
		}
		if err := d.SetActorID(fuzzActorB); err != nil {
			t.Fatal(err)
		}
		if err := edit(d); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Commit("edit"); err != nil {
			t.Fatal(err)
		}
		chs, err := d.Changes(base.Heads()...)
		if err != nil || len(chs) != 1 {
			t.Fatalf("%d changes, %v", len(chs), err)
		}
		out = append(out, chs[0].Save())
	}
	return out
}

// at returns the value of a root key.
func at(d *automerge.Doc, key string) *automerge.Value {
	v, err := d.RootMap().Get(key)
	if err != nil {
		panic(err)
	}
	return v
}

// chunkBody returns a chunk's data (after its header).
func chunkBody(t testing.TB, b []byte) []byte {
	ch, err := readChunk(&reader{b: b})
	if err != nil {
		t.Fatal(err)
	}
	return ch.data
}

// fuzzServer returns the server's copy of base.
func fuzzServer(t testing.TB, base [][]byte) *Doc {
	d, err := LoadWith(nil, base, fuzzLimits)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func baseChanges(t testing.TB, d *automerge.Doc) [][]byte {
	chs, err := d.Changes()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, c := range chs {
		out = append(out, c.Save())
	}
	return out
}

// exercise drives the core over a document that took fuzzed input.
func exercise(t *testing.T, d *Doc, s *SyncState) {
	if s != nil {
		s.Generate()
	}
	d.Heads()
	walk(d.Automerge().Root(), 0)
	saved := d.Save()
	re, err := LoadWith(saved, nil, fuzzLimits)
	if err != nil {
		t.Fatalf("the document does not reload from its own save: %v", err)
	}
	walk(re.Automerge().Root(), 0)
	fresh := re.NewSyncState()
	if m, ok := fresh.Generate(); ok {
		_, _ = NewDocWith(fuzzLimits).NewSyncState().Receive(m)
	}
}

// walk reads every value under v.
func walk(v *automerge.Value, depth int) {
	if depth > 20 {
		return
	}
	switch v.Kind() {
	case automerge.KindMap:
		vals, _ := v.Map().Values()
		for _, c := range vals {
			walk(c, depth+1)
		}
	case automerge.KindList:
		vals, _ := v.List().Values()
		for _, c := range vals {
			walk(c, depth+1)
		}
	case automerge.KindText:
		_, _ = v.Text().Get()
	case automerge.KindCounter:
		_, _ = v.Counter().Get()
	}
}

// FuzzReceive feeds arbitrary bytes as a peer's sync message, to a new
// document and to one with history.
func FuzzReceive(f *testing.F) {
	for _, m := range clientMessages(f) {
		f.Add(m)
	}
	base := fuzzBase(f)
	bc := baseChanges(f, base)
	lim := DefaultLimits()
	for _, e := range fuzzEdits(f, base) {
		c, err := decodeChangeChunk(e, &lim)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(syncMessage{heads: []Hash{c.hash}}.encode([]*changeChunk{c}))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, d := range []*Doc{NewDocWith(fuzzLimits), fuzzServer(t, bc)} {
			s := d.NewSyncState()
			if _, err := s.Receive(msg); err == nil {
				exercise(t, d, s)
			}
		}
	})
}

// FuzzReceiveChange fuzzes the body of one change inside an otherwise valid
// sync message (the harness writes the chunk header and checksum), which
// reaches the decoder and validator for every column, received by a
// document that has objects of every kind for the change to edit.
func FuzzReceiveChange(f *testing.F) {
	base := fuzzBase(f)
	bc := baseChanges(f, base)
	f.Add(chunkBody(f, bc[0]))
	for _, e := range fuzzEdits(f, base) {
		f.Add(chunkBody(f, e))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c := frameChunk(chunkChange, body)
		msg := append(syncMessage{}.encodeWithoutChanges()[:4], 1)
		msg = append(leb128.AppendUint(msg, uint64(len(c))), c...)
		d := fuzzServer(t, bc)
		s := d.NewSyncState()
		if _, err := s.Receive(msg); err == nil {
			exercise(t, d, s)
		}
	})
}

// FuzzDocument fuzzes the data of a document chunk (the harness frames it)
// as a stored snapshot, an import into a new document and into one with
// history, and a body for ChunkHashes.
func FuzzDocument(f *testing.F) {
	base := fuzzBase(f)
	bc := baseChanges(f, base)
	f.Add(chunkBody(f, base.Save()))
	for i, e := range fuzzEdits(f, base) {
		d, err := base.Fork()
		if err != nil {
			f.Fatal(err)
		}
		if err := d.LoadIncremental(e); err != nil {
			f.Fatal(err)
		}
		if i%3 == 0 {
			f.Add(chunkBody(f, d.Save()))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		doc := frameChunk(chunkDocument, data)
		if d, err := LoadWith(doc, nil, fuzzLimits); err == nil {
			// What loads compacts, in Go, to a document with its heads.
			snap, heads, err := Compact(doc, nil)
			if err != nil {
				t.Fatalf("a document that loads does not compact: %v", err)
			}
			again, err := LoadWith(snap, nil, fuzzLimits)
			if err != nil || !slices.Equal(heads, d.Heads()) || !slices.Equal(again.Heads(), heads) {
				t.Fatalf("compacted: %v; heads %x, loaded %x, reloaded", err, heads, d.Heads())
			}
			exercise(t, d, d.NewSyncState())
		}
		_, _ = chunkHashes(doc, fuzzLimits)
		for _, d := range []*Doc{NewDocWith(fuzzLimits), fuzzServer(t, bc)} {
			if err := d.Import(doc); err == nil {
				exercise(t, d, d.NewSyncState())
			}
		}
	})
}

// FuzzImport fuzzes whole bodies of PUT /docs/{id}/binary: ChunkHashes, as
// the API calls it first, then Import into a document with history.
func FuzzImport(f *testing.F) {
	base := fuzzBase(f)
	bc := baseChanges(f, base)
	edits := fuzzEdits(f, base)
	f.Add(base.Save())
	f.Add(bytes.Join(edits[:3], nil))
	f.Add(append(base.Save(), edits[3]...))
	f.Add(bytes.Join(bc, nil))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, _ = chunkHashes(body, fuzzLimits)
		d := fuzzServer(t, bc)
		if err := d.Import(body); err == nil {
			exercise(t, d, d.NewSyncState())
		}
	})
}
