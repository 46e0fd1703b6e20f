package core

import (
	"errors"
	"testing"
)

// ReceiveChanges holds a change whose dependencies are missing, says so
// through PendingDeps, and applies both in causal order when the missing
// one arrives, as Receive does.
func TestReceiveChangesHoldsAndReleases(t *testing.T) {
	chain := chainA(27)
	d, err := Load(nil, chunksOf(chain[:25]))
	if err != nil {
		t.Fatal(err)
	}
	peer := new(int)
	h26, h27 := chain[25].hash(), chain[26].hash()
	got, err := d.ReceiveChanges([][]byte{chain[26].chunk()}, peer)
	if err != nil || len(got) != 0 || d.Pending() != 1 {
		t.Fatalf("got %d changes, %d held, err %v", len(got), d.Pending(), err)
	}
	if deps, ok := d.PendingDeps(h27); !ok || len(deps) != 1 || deps[0] != h26 {
		t.Fatalf("pending deps %x, %v", deps, ok)
	}
	if _, ok := d.PendingDeps(h26); ok {
		t.Fatal("a change that is not held is reported held")
	}
	got, err = d.ReceiveChanges([][]byte{chain[25].chunk()}, peer)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Hash != h26 || got[1].Hash != h27 || d.Pending() != 0 || !d.Has(h27) {
		t.Fatalf("applied %d, held %d", len(got), d.Pending())
	}
	// Nothing new: nothing applied.
	if got, err := d.ReceiveChanges([][]byte{chain[25].chunk()}, peer); err != nil || len(got) != 0 {
		t.Fatalf("a duplicate gave %d changes, err %v", len(got), err)
	}
}

// ReceiveChanges refuses what Receive refuses, with the same errors, and
// applies nothing of a refused batch.
func TestReceiveChangesRefuses(t *testing.T) {
	d := baseDoc(t)
	a2 := &testChange{deps: []Hash{baseChange().hash()}, actor: actorA, seq: 2, startOp: 8,
		ops: []changeOp{{key: prop("new"), action: actMakeList}}}
	evil := &testChange{deps: []Hash{a2.hash()}, actor: actorB, seq: 1, startOp: 9, others: [][]byte{actorA},
		ops: []changeOp{{obj: ref{1, 8}, key: prop("boom"), action: actSet, val: vInt(1)}}}
	heads := d.Heads()
	_, err := d.ReceiveChanges([][]byte{evil.chunk(), a2.chunk()}, nil)
	var bad *InvalidChangeError
	if !errors.Is(err, ErrBadSyncMessage) || !errors.As(err, &bad) {
		t.Fatalf("got %v", err)
	}
	if d.Has(a2.hash()) || len(d.Heads()) != len(heads) || d.Pending() != 0 {
		t.Fatal("a refused batch changed the document")
	}
	if _, err := d.ReceiveChanges([][]byte{a2.compressed(t)}, nil); !errors.As(err, &bad) {
		t.Fatalf("a compressed change: %v", err)
	}

	chain := chainA(12)
	d = baseDoc(t)
	d.SetLimits(Limits{MaxPendingChanges: 3})
	if _, err := d.ReceiveChanges(chunksOf(chain[2:6]), nil); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("too many held: %v", err)
	}
	d.SetLimits(Limits{MaxOpsPerMessage: 2})
	if _, err := d.ReceiveChanges(chunksOf(chain[1:4]), nil); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("too many ops: %v", err)
	}
}

// A read-only peer's changes are decoded, not validated.
func TestCheckReadOnlyChanges(t *testing.T) {
	d := baseDoc(t)
	evil := &testChange{deps: []Hash{{1}}, actor: actorB, seq: 1, startOp: 9, others: [][]byte{actorA},
		ops: []changeOp{{obj: ref{1, 8}, key: prop("boom"), action: actSet, val: vInt(1)}}}
	if err := d.CheckReadOnlyChanges([][]byte{evil.chunk()}); err != nil {
		t.Fatalf("a well-formed change was refused: %v", err)
	}
	raw := evil.chunk()
	if err := d.CheckReadOnlyChanges([][]byte{raw[:len(raw)-1]}); !errors.Is(err, ErrBadSyncMessage) {
		t.Fatalf("a truncated change: %v", err)
	}
}
