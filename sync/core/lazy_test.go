package core

import (
	"bytes"
	"slices"
	"testing"
)

// Changes a peer sends reach the core only when something needs it: a
// document that only relays them holds no core document, and answers for
// its heads and changes from what it validated.
func TestReceiveChangesDefersTheCore(t *testing.T) {
	chain := chainA(30)
	d := NewDoc()
	got, err := d.ReceiveChanges(chunksOf(chain[:20]), nil)
	if err != nil || len(got) != 20 {
		t.Fatalf("applied %d, err %v", len(got), err)
	}
	if got, err := d.ReceiveChanges(chunksOf(chain[20:]), nil); err != nil || len(got) != 10 {
		t.Fatalf("applied %d, err %v", len(got), err)
	}
	if d.d != nil {
		t.Fatal("receiving changes created a core document")
	}
	want := []Hash{chain[29].hash()}
	if d.Empty() || !slices.Equal(d.Heads(), want) || !d.Has(chain[3].hash()) {
		t.Fatalf("deferred document: empty %v, heads %x", d.Empty(), d.Heads())
	}
	// A bad change is refused against the index the deferred ones updated.
	again := *chain[29]
	again.seq = 31 // the actor's seq 30 exists: skipping to 31 is refused
	again.deps = []Hash{chain[29].hash()}
	if _, err := d.ReceiveChanges([][]byte{again.chunk()}, nil); err == nil {
		t.Fatal("a change out of its actor's sequence was accepted")
	}
	if err := d.Materialize(); err != nil {
		t.Fatal(err)
	}
	if d.d == nil || !slices.Equal(hashes(d.d.Heads()), want) {
		t.Fatalf("materialized heads %x", d.Heads())
	}
	loaded, err := Load(d.Save(), nil)
	if err != nil || !slices.Equal(loaded.Heads(), want) {
		t.Fatalf("saved and loaded: heads %x, err %v", loaded.Heads(), err)
	}
}

// Should the core refuse changes that passed validation, the document
// keeps them: its heads stay, Save writes them after the snapshot, and
// Materialize says why until it succeeds.
func TestMaterializeFailureLosesNothing(t *testing.T) {
	chain := chainA(3)
	d := NewDoc()
	if _, err := d.ReceiveChanges(chunksOf(chain), nil); err != nil {
		t.Fatal(err)
	}
	heads := d.Heads()
	good := d.lazy.raws[2]
	d.lazy.raws[2] = []byte{0x85, 0x6f, 0x4a, 0x83, 1, 2, 3} // a chunk the core cannot read
	err := d.Materialize()
	if err == nil {
		t.Fatal("a chunk the core refuses materialized")
	}
	if !slices.Equal(d.Heads(), heads) || !d.Has(chain[2].hash()) || d.Empty() {
		t.Fatalf("after the failure: heads %x", d.Heads())
	}
	if !bytes.HasSuffix(d.Save(), d.lazy.raws[2]) {
		t.Fatal("Save dropped the changes the core refused")
	}
	if d.Materialize() == nil {
		t.Fatal("the second try did not fail the same way")
	}
	d.lazy.raws[2] = good
	if err := d.Materialize(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hashes(d.d.Heads()), heads) {
		t.Fatal("the retried materialization has other heads")
	}
}
