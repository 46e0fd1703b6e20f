package engine

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// branchyDoc makes a history with concurrent branches: peers edit apart
// and merge at random. It returns the merged document and every change in
// the order the merged document applied them.
func branchyDoc(t testing.TB, seed uint64, steps int) (*automerge.Doc, [][]byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	peers := make([]*amPeer, 2+r.IntN(3))
	for i := range peers {
		peers[i] = newAMPeer(t, i)
	}
	for range steps {
		p := peers[r.IntN(len(peers))]
		if r.IntN(3) == 0 {
			q := peers[r.IntN(len(peers))]
			if q != p {
				if _, err := p.doc.Merge(q.doc); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		p.edit(t, r, 1+r.IntN(2))
	}
	all := peers[0].doc
	for _, q := range peers[1:] {
		if _, err := all.Merge(q.doc); err != nil {
			t.Fatal(err)
		}
	}
	chs, err := all.Changes()
	if err != nil {
		t.Fatal(err)
	}
	raw := make([][]byte, len(chs))
	for i, c := range chs {
		raw[i] = c.Save()
	}
	return all, raw
}

// ancestorsOf is the brute-force reference: heads and all their ancestors.
func ancestorsOf(g *Graph, hs []Hash) map[Hash]bool {
	out := map[Hash]bool{}
	stack := slices.Clone(hs)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		c, ok := g.Change(h)
		if !ok || out[h] {
			continue
		}
		out[h] = true
		stack = append(stack, c.Deps...)
	}
	return out
}

func TestGraphMatchesAutomergeGo(t *testing.T) {
	for seed := range uint64(12) {
		doc, raw := branchyDoc(t, seed, 60)
		d := docOf(t, raw)
		g := d.Graph()
		if g.Len() != len(raw) {
			t.Fatalf("seed %d: %d changes, want %d", seed, g.Len(), len(raw))
		}
		if !slices.Equal(g.Heads(), heads(doc)) {
			t.Fatalf("seed %d: heads differ", seed)
		}
		hashes := make([]Hash, 0, len(raw))
		for c := range g.Changes() {
			hashes = append(hashes, c.Hash)
			if !slices.Equal(c.Raw, raw[len(hashes)-1]) {
				t.Fatalf("seed %d: bytes of change %d differ", seed, len(hashes)-1)
			}
		}
		r := rand.New(rand.NewPCG(seed, 2))
		for range 40 {
			// Some random heads: a few changes, perhaps an unknown hash.
			var hs []Hash
			for range 1 + r.IntN(3) {
				hs = append(hs, hashes[r.IntN(len(hashes))])
			}
			if r.IntN(5) == 0 {
				hs = append(hs, Hash{1, 2, 3})
			}
			hs = sortedHashes(hs)
			got := g.ChangesSince(hs)
			// The core's answer (automerge-go ignores unknown hashes too).
			var am []automerge.ChangeHash
			for _, h := range hs {
				if g.Has(h) {
					am = append(am, automerge.ChangeHash(h))
				}
			}
			want, err := doc.Changes(am...)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("seed %d: %d changes since, core says %d", seed, len(got), len(want))
			}
			for i := range got {
				if got[i] != Hash(want[i].Hash()) {
					t.Fatalf("seed %d: changes since differ at %d (order or content)", seed, i)
				}
			}
			// removeAncestors against the reference.
			set := map[uint32]struct{}{}
			for range r.IntN(6) {
				i, _ := g.lookup(&hashes[r.IntN(len(hashes))])
				set[i] = struct{}{}
			}
			anc := ancestorsOf(g, hs)
			wantLeft := 0
			for i := range set {
				if !anc[g.node(i).hash] {
					wantLeft++
				}
			}
			g.removeAncestors(set, hs)
			for i := range set {
				if anc[g.node(i).hash] {
					t.Fatalf("seed %d: an ancestor was kept", seed)
				}
			}
			if len(set) != wantLeft {
				t.Fatalf("seed %d: %d left, want %d", seed, len(set), wantLeft)
			}
			// And at or near our heads (removeAncestors stops once it
			// has taken them all): every head, or all but one, and
			// perhaps a change of theirs; every node in the set, or a
			// few.
			near := g.Heads()
			if len(near) > 1 && r.IntN(2) == 0 {
				near = slices.Delete(near, 0, 1)
			}
			if r.IntN(3) == 0 {
				near = append(near, hashes[r.IntN(len(hashes))], Hash{4, 5, 6})
			}
			near = sortedHashes(near)
			set = map[uint32]struct{}{}
			for i := range uint32(g.Len()) {
				if r.IntN(2) == 0 || i == 0 {
					set[i] = struct{}{}
				}
			}
			anc = ancestorsOf(g, near)
			wantLeft = 0
			for i := range set {
				if !anc[g.node(i).hash] {
					wantLeft++
				}
			}
			g.removeAncestors(set, near)
			for i := range set {
				if anc[g.node(i).hash] {
					t.Fatalf("seed %d: an ancestor of heads near ours was kept", seed)
				}
			}
			if len(set) != wantLeft {
				t.Fatalf("seed %d: near our heads, %d left, want %d", seed, len(set), wantLeft)
			}
		}
		if got := g.ChangesSince(g.Heads()); len(got) != 0 {
			t.Fatalf("seed %d: changes since our heads: %d", seed, len(got))
		}
		if got := g.ChangesSince(nil); len(got) != len(raw) {
			t.Fatalf("seed %d: changes since nothing: %d", seed, len(got))
		}
	}
}

func TestGraphAddRefuses(t *testing.T) {
	_, raw := linearDoc(t, 3, 1)
	cs := make([]*Change, 3)
	for i, b := range raw {
		var err error
		if cs[i], err = ParseChange(b); err != nil {
			t.Fatal(err)
		}
	}
	g := NewGraph()
	var missing *MissingDepsError
	if _, err := g.Add(cs[1]); !errors.As(err, &missing) || missing.Missing[0] != cs[0].Hash {
		t.Fatalf("missing deps: %v", err)
	}
	for i, c := range cs[:2] {
		if ok, err := g.Add(c); !ok || err != nil {
			t.Fatalf("add %d: %v %v", i, ok, err)
		}
	}
	if ok, err := g.Add(cs[1]); ok || err != nil {
		t.Fatalf("duplicate: %v %v", ok, err)
	}
	if !slices.Equal(g.Heads(), []Hash{cs[1].Hash}) {
		t.Fatal("heads")
	}
	// A different change claiming seq 2 again.
	fork := *cs[2]
	fork.Seq = 2
	fork.Hash[0] ^= 1
	fork.Deps = []Hash{cs[1].Hash}
	if _, err := g.Add(&fork); !errors.Is(err, ErrSeq) {
		t.Fatalf("duplicate seq: %v", err)
	}
	if c, ok := g.Change(cs[1].Hash); !ok || c.Seq != 2 || c.StartOp != cs[1].StartOp || c.NumOps != 1 || !slices.Equal(c.Deps, cs[1].Deps) {
		t.Fatalf("change read back: %+v", c)
	}
	if g.MaxOp(cs[0].Actor) != cs[1].StartOp {
		t.Fatalf("max op %d", g.MaxOp(cs[0].Actor))
	}
}

// TestGraphPrefixCollision gives two changes the same first 8 hash bytes
// (as only a crafted hash could): both are found.
func TestGraphPrefixCollision(t *testing.T) {
	g := NewGraph()
	a := &Change{Hash: Hash{1, 2, 3, 4, 5, 6, 7, 8, 9}, Actor: []byte{1}, Seq: 1, StartOp: 1}
	b := &Change{Hash: Hash{1, 2, 3, 4, 5, 6, 7, 8, 10}, Actor: []byte{2}, Seq: 1, StartOp: 1}
	for _, c := range []*Change{a, b} {
		if _, err := g.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	if !g.Has(a.Hash) || !g.Has(b.Hash) || g.Has(Hash{1, 2, 3, 4, 5, 6, 7, 8, 11}) {
		t.Fatal("lookup with a shared prefix")
	}
	if len(g.Heads()) != 2 {
		t.Fatal("heads")
	}
}

func TestParseChange(t *testing.T) {
	doc, raw := linearDoc(t, 2, 1)
	c, err := ParseChange(raw[1])
	if err != nil {
		t.Fatal(err)
	}
	am, _ := doc.Changes()
	if c.Hash != Hash(am[1].Hash()) || c.Seq != am[1].ActorSeq() || len(c.Deps) != 1 || c.Deps[0] != Hash(am[0].Hash()) {
		t.Fatalf("header %+v", c)
	}
	if c.NumOps != 1 || c.StartOp != 2 {
		t.Fatalf("ops %d from %d", c.NumOps, c.StartOp)
	}
	bad := slices.Clone(raw[1])
	bad[len(bad)-1] ^= 0xff
	if _, err := ParseChange(bad); !errors.Is(err, ErrBadChange) {
		t.Fatalf("bad checksum: %v", err)
	}
	if _, err := ParseChange(append(slices.Clone(raw[1]), 0)); err == nil {
		t.Fatal("trailing byte accepted")
	}
	for i := range len(raw[1]) {
		ParseChange(raw[1][:i]) // must not panic
	}
}
