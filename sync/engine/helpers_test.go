package engine

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// amPeer is a client: an automerge-go document with a deterministic actor
// and commit times, so that the same edits make the same changes (and
// hashes) in every run.
type amPeer struct {
	doc   *automerge.Doc
	actor string
	clock int64 // milliseconds of the next commit
	n     int   // edits made
}

func newAMPeer(t testing.TB, i int) *amPeer {
	t.Helper()
	p := &amPeer{doc: automerge.New(), actor: fmt.Sprintf("%032x", 0xa0+i), clock: 1_700_000_000_000}
	if err := p.doc.SetActorID(p.actor); err != nil {
		t.Fatal(err)
	}
	return p
}

// edit makes k changes, drawing their content from r.
func (p *amPeer) edit(t testing.TB, r *rand.Rand, k int) {
	t.Helper()
	for range k {
		p.n++
		key := fmt.Sprintf("k%d", r.IntN(8))
		var err error
		switch r.IntN(3) {
		case 0:
			err = p.doc.RootMap().Set(key, r.Int64())
		case 1:
			err = p.doc.RootMap().Set(key, fmt.Sprintf("%s-%d", p.actor[28:], p.n))
		default:
			err = p.doc.Path("text").Set(automerge.NewText(fmt.Sprintf("t%d", r.IntN(100))))
		}
		if err != nil {
			t.Fatal(err)
		}
		p.clock += 1000
		ts := time.UnixMilli(p.clock)
		if _, err := p.doc.Commit("", automerge.CommitOptions{Time: &ts}); err != nil {
			t.Fatal(err)
		}
	}
}

func heads(d *automerge.Doc) []Hash {
	hs := d.Heads()
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}

// linearDoc returns a document of n changes by the given number of actors
// taking turns, and the changes' bytes in order.
func linearDoc(t testing.TB, n, actors int) (*automerge.Doc, [][]byte) {
	t.Helper()
	d := automerge.New()
	ts := time.UnixMilli(1_700_000_000_000)
	var raw [][]byte
	for i := range n {
		if err := d.SetActorID(fmt.Sprintf("%032x", 1+i%actors)); err != nil {
			t.Fatal(err)
		}
		if err := d.RootMap().Set(fmt.Sprintf("k%d", i%16), int64(i)); err != nil {
			t.Fatal(err)
		}
		h, err := d.Commit("", automerge.CommitOptions{Time: &ts})
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Change(h)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, c.Save())
	}
	return d, raw
}

// docOf returns a Document holding the given changes.
func docOf(t testing.TB, raw [][]byte) *Document {
	t.Helper()
	d := NewDocument(Options{})
	cs := make([]*Change, len(raw))
	for i, b := range raw {
		c, err := ParseChange(b)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	if _, err := d.Add(cs); err != nil {
		t.Fatal(err)
	}
	return d
}

func sortedHashes(hs []Hash) []Hash { return sortHashes(slices.Clone(hs)) }

// synthChanges makes n change chunks without ops by the given number of
// actors taking turns, each depending on the one before (and every tenth
// also on the one before that, as after a merge): fast to make in bulk.
func synthChanges(n, actors int) [][]byte {
	out := make([][]byte, n)
	var hashes []Hash
	seqs := make([]uint64, actors)
	for i := range n {
		a := i % actors
		seqs[a]++
		var deps []Hash
		if i > 0 {
			deps = append(deps, hashes[i-1])
		}
		if i > 1 && i%10 == 0 {
			deps = append(deps, hashes[i-2])
		}
		deps = sortHashes(deps)
		data := appendHashes(nil, deps)
		data = leb128.AppendUint(data, 16)
		data = append(data, fmt.Appendf(nil, "%016x", a)...)
		data = leb128.AppendUint(data, seqs[a])
		data = leb128.AppendUint(data, uint64(i+1))
		data = append(data, 0, 0, 0, 0) // time, message, other actors, columns
		c := append([]byte{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 1}, leb128.AppendUint(nil, uint64(len(data)))...)
		c = append(c, data...)
		h := Hash(sha256.Sum256(c[8:]))
		copy(c[4:8], h[:4])
		hashes = append(hashes, h)
		out[i] = c
	}
	return out
}
