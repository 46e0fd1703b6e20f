package core

import (
	"errors"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// editedDocs returns a saved document and the changes two actors made
// after it, concurrently (so the result has two heads), in an order that
// keeps each change after its deps.
func editedDocs(t *testing.T) (snapshot []byte, changes [][]byte) {
	t.Helper()
	a := automerge.New()
	if err := a.RootMap().Set("title", "start"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Commit("start"); err != nil {
		t.Fatal(err)
	}
	snapshot = a.Save()
	b, err := a.Fork()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		for j, d := range []*automerge.Doc{a, b} {
			if err := d.RootMap().Set("k", int64(10*i+j)); err != nil {
				t.Fatal(err)
			}
			h, err := d.Commit("")
			if err != nil {
				t.Fatal(err)
			}
			ch, err := d.Change(h)
			if err != nil {
				t.Fatal(err)
			}
			changes = append(changes, ch.Save())
		}
	}
	return snapshot, changes
}

func TestCompactMatchesLoadAndSave(t *testing.T) {
	snapshot, changes := editedDocs(t)
	for _, tc := range []struct {
		name     string
		snapshot []byte
		changes  [][]byte
	}{
		{"snapshot and log", snapshot, changes},
		{"log only", nil, append([][]byte{firstChange(t, snapshot)}, changes...)},
		{"snapshot only", snapshot, nil},
	} {
		snap, heads, err := Compact(tc.snapshot, tc.changes)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		ref, err := Load(tc.snapshot, tc.changes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(heads, ref.Heads()) {
			t.Fatalf("%s: heads %x, Load gives %x", tc.name, heads, ref.Heads())
		}
		again, err := Load(snap, nil)
		if err != nil {
			t.Fatalf("%s: the compacted snapshot does not pass Load: %v", tc.name, err)
		}
		if !slices.Equal(again.Heads(), heads) {
			t.Fatalf("%s: the compacted snapshot loads with heads %x", tc.name, again.Heads())
		}
		core, err := automerge.Load(snap)
		if err != nil {
			t.Fatalf("%s: the core does not load the compacted snapshot: %v", tc.name, err)
		}
		if !slices.Equal(hashes(core.Heads()), heads) {
			t.Fatalf("%s: the core loads the compacted snapshot with heads %x", tc.name, hashes(core.Heads()))
		}
		if tc.changes != nil && len(heads) != 2 {
			t.Fatalf("%s: %d heads, want the two actors'", tc.name, len(heads))
		}
	}
}

// firstChange returns the one change a saved document holds.
func firstChange(t *testing.T, saved []byte) []byte {
	d, err := automerge.Load(saved)
	if err != nil {
		t.Fatal(err)
	}
	chs, err := d.Changes()
	if err != nil || len(chs) != 1 {
		t.Fatalf("%d changes, %v", len(chs), err)
	}
	return chs[0].Save()
}

// A logged change whose deps are missing is not Compact's to place: it
// leaves the document to Load and Save, which hold the change and keep it.
func TestCompactUnsureOfHeldChanges(t *testing.T) {
	snapshot, changes := editedDocs(t)
	held := append(slices.Clone(changes[:2]), changes[4:]...) // changes 2 and 3 lost
	if _, _, err := Compact(snapshot, held); !errors.Is(err, ErrCompactUnsure) {
		t.Fatalf("compacting around missing deps: %v", err)
	}
	// A snapshot with change chunks after its document (Save of a document
	// holding changes) is not taken either.
	d, err := Load(snapshot, held)
	if err != nil {
		t.Fatal(err)
	}
	if d.Pending() == 0 {
		t.Fatal("Load holds nothing back")
	}
	if _, _, err := Compact(d.Save(), nil); !errors.Is(err, ErrCompactUnsure) {
		t.Fatalf("compacting a snapshot with trailing changes: %v", err)
	}
	if _, _, err := Compact(snapshot, [][]byte{[]byte("not a change")}); err == nil || errors.Is(err, ErrCompactUnsure) {
		t.Fatalf("compacting garbage: %v", err)
	}
}

// TestCompactPaced: the paced compaction writes the same snapshot, and
// calls pace as it goes (at least once per change, in each pass).
func TestCompactPaced(t *testing.T) {
	snapshot, changes := editedDocs(t)
	want, wantHeads, err := Compact(snapshot, changes)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	got, heads, err := CompactPaced(snapshot, changes, func() { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || !slices.Equal(heads, wantHeads) {
		t.Fatal("the paced compaction wrote another snapshot")
	}
	if n := len(changes) + 1; calls < 2*n {
		t.Fatalf("pace called %d times for %d changes", calls, n)
	}
}
