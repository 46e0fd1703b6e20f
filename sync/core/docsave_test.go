package core

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/automerge/automerge-go"
)

// parsedDoc is a document chunk's parts, columns inflated.
type parsedDoc struct {
	actors     [][]byte
	heads      []Hash
	changeCols []column
	opCols     []column
	headIdx    []byte
}

func parseDocChunk(t testing.TB, b []byte) parsedDoc {
	t.Helper()
	r := &reader{b: b}
	ch, err := readChunk(r)
	if err != nil || ch.typ != chunkDocument || len(r.b) > 0 {
		t.Fatalf("not one document chunk: %v", err)
	}
	if string(ch.hash[:4]) != string(ch.sum) {
		t.Fatal("bad checksum")
	}
	r = &reader{b: ch.data}
	var p parsedDoc
	n := r.uleb()
	for range n {
		p.actors = append(p.actors, readActor(r))
	}
	p.heads = r.hashes()
	cm, err := readColumnMeta(r)
	if err != nil {
		t.Fatal(err)
	}
	om, err := readColumnMeta(r)
	if err != nil {
		t.Fatal(err)
	}
	cc, rest, err := sliceColumns(cm, r.b)
	if err != nil {
		t.Fatal(err)
	}
	oc, rest, err := sliceColumns(om, rest)
	if err != nil {
		t.Fatal(err)
	}
	p.headIdx = rest
	for _, cols := range [][]column{cc, oc} {
		for i := range cols {
			if cols[i].spec.deflated() {
				if cols[i].data, err = inflate(cols[i].data, 1<<30); err != nil {
					t.Fatal(err)
				}
				cols[i].spec &^= 8
			}
		}
	}
	p.changeCols, p.opCols = cc, oc
	return p
}

func diffDocs(t testing.TB, got, want parsedDoc) error {
	t.Helper()
	if !slices.EqualFunc(got.actors, want.actors, bytes.Equal) {
		return fmt.Errorf("actors %x, want %x", got.actors, want.actors)
	}
	if !slices.Equal(got.heads, want.heads) {
		return fmt.Errorf("heads %x, want %x", got.heads, want.heads)
	}
	for _, kind := range []struct {
		name      string
		got, want []column
	}{{"change", got.changeCols, want.changeCols}, {"op", got.opCols, want.opCols}} {
		specs := func(cs []column) (s []colSpec) {
			for _, c := range cs {
				s = append(s, c.spec)
			}
			return s
		}
		if !slices.Equal(specs(kind.got), specs(kind.want)) {
			return fmt.Errorf("%s columns %#x, want %#x", kind.name, specs(kind.got), specs(kind.want))
		}
		for i := range kind.got {
			if !bytes.Equal(kind.got[i].data, kind.want[i].data) {
				return fmt.Errorf("%s column %#x:\n got %x\nwant %x", kind.name, kind.got[i].spec, kind.got[i].data, kind.want[i].data)
			}
		}
	}
	if !bytes.Equal(got.headIdx, want.headIdx) {
		return fmt.Errorf("head indexes %x, want %x", got.headIdx, want.headIdx)
	}
	return nil
}

// randomDoc builds a document by random edits of a few actors, merged
// now and then: maps, lists and text (nested), sets, deletes, counters.
func randomDoc(t testing.TB, r *rand.Rand, steps int) *automerge.Doc {
	t.Helper()
	n := 1 + r.IntN(3)
	docs := make([]*automerge.Doc, n)
	docs[0] = automerge.New()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	commit := func(d *automerge.Doc, empty bool) {
		msg := ""
		if r.IntN(4) == 0 {
			msg = "msg" + strconv.Itoa(r.IntN(3))
		}
		if _, err := d.Commit(msg, automerge.CommitOptions{AllowEmpty: empty}); err != nil && err.Error() != "Commit is empty" {
			t.Fatal(err)
		}
	}
	root := docs[0].RootMap()
	must(root.Set("text", automerge.NewText("")))
	must(root.Set("list", automerge.NewList()))
	must(root.Set("count", automerge.NewCounter(0)))
	_, err := docs[0].Commit("init")
	must(err)
	for i := 1; i < n; i++ {
		docs[i], err = docs[0].Fork()
		must(err)
	}
	keys := []string{"a", "b", "ü", "aa", "zz", "B", "title"}
	for range steps {
		d := docs[r.IntN(n)]
		root := d.RootMap()
		switch a := r.IntN(12); {
		case a < 2:
			must(root.Set(keys[r.IntN(len(keys))], int64(r.IntN(100))))
		case a < 3:
			must(root.Delete(keys[r.IntN(len(keys))]))
		case a < 6:
			txt, err := automerge.As[*automerge.Text](root.Get("text"))
			must(err)
			p := r.IntN(txt.Len() + 1)
			if r.IntN(3) == 0 && txt.Len() > 0 {
				p = min(p, txt.Len()-1)
				must(txt.Splice(p, min(1+r.IntN(3), txt.Len()-p), ""))
			} else {
				must(txt.Insert(p, "xyz"[:1+r.IntN(3)]))
			}
		case a < 9:
			l, err := automerge.As[*automerge.List](root.Get("list"))
			must(err)
			switch {
			case l.Len() > 0 && r.IntN(4) == 0:
				must(l.Delete(r.IntN(l.Len())))
			case l.Len() > 0 && r.IntN(3) == 0:
				must(l.Set(r.IntN(l.Len()), "set"+strconv.Itoa(r.IntN(9))))
			case r.IntN(5) == 0:
				must(l.Insert(r.IntN(l.Len()+1), automerge.NewMap()))
			default:
				must(l.Insert(r.IntN(l.Len()+1), int64(r.IntN(1000))))
			}
		case a < 10:
			c, err := automerge.As[*automerge.Counter](root.Get("count"))
			must(err)
			must(c.Inc(int64(r.IntN(5))))
		default:
			if o := docs[r.IntN(n)]; o != d {
				_, err := d.Merge(o)
				must(err)
			}
		}
		if r.IntN(3) == 0 {
			commit(d, r.IntN(20) == 0)
		}
	}
	for _, d := range docs {
		commit(d, false)
	}
	for _, d := range docs[1:] {
		_, err := docs[0].Merge(d)
		must(err)
	}
	return docs[0]
}

// EncodeDocument writes what the core's Save writes, column for column
// (deflation aside: Go's deflate is not Rust's), on randomized documents;
// the core loads it with the same heads and the same content. Set
// DOCSAVE_SESSIONS for more.
func TestEncodeDocumentMatchesSave(t *testing.T) {
	sessions := 150
	if testing.Short() {
		sessions = 40
	}
	if s, err := strconv.Atoi(os.Getenv("DOCSAVE_SESSIONS")); err == nil {
		sessions = s
	}
	multi := 0 // changes that refer to two other actors or more
	lim := DefaultLimits()
	for seed := uint64(1); seed <= uint64(sessions); seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		doc := randomDoc(t, r, 10+r.IntN(120))
		chs, err := doc.Changes()
		if err != nil {
			t.Fatal(err)
		}
		raws := make([][]byte, len(chs))
		for i, c := range chs {
			raws[i] = c.Save()
			if c, err := decodeChangeChunk(raws[i], &lim); err == nil && len(c.others) >= 2 {
				multi++
			}
		}
		for _, compress := range []bool{false, true} {
			got, err := encodeDocument(raws, compress, nil)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			if err := diffDocs(t, parseDocChunk(t, got), parseDocChunk(t, doc.Save())); err != nil {
				t.Fatalf("seed %d (compress %v, %d changes): %v", seed, compress, len(raws), err)
			}
			for name, b := range map[string][]byte{"EncodeDocument": got, "Save": doc.Save()} {
				rebuilt, hs, err := DocumentChanges(b)
				if err != nil {
					t.Fatalf("seed %d: DocumentChanges of %s: %v", seed, name, err)
				}
				for i := range raws {
					if !bytes.Equal(rebuilt[i], raws[i]) || hs[i] != Hash(chs[i].Hash()) {
						t.Fatalf("seed %d: change %d rebuilt from %s:\n got %x\nwant %x", seed, i, name, rebuilt[i], raws[i])
					}
				}
				if len(rebuilt) != len(raws) {
					t.Fatalf("seed %d: %d changes rebuilt, want %d", seed, len(rebuilt), len(raws))
				}
			}
			loaded, err := Load(got, nil)
			if err != nil {
				t.Fatalf("seed %d: Load: %v", seed, err)
			}
			if !slices.Equal(loaded.Heads(), hashes(doc.Heads())) {
				t.Fatalf("seed %d: loads with heads %x", seed, loaded.Heads())
			}
		}
	}
	t.Logf("%d documents; %d changes with two other actors or more", sessions, multi)
	if multi == 0 {
		t.Fatal("no change refers to two other actors: the other actors' order went untested")
	}
}

// The JS implementation's documents (marks included) rebuild in Go to the
// very changes JS made, and EncodeDocument of those changes loads in the
// core with the JS document's heads and rebuilds to them again.
func TestEncodeDocumentJSCorpus(t *testing.T) {
	for _, tr := range loadJSCorpus(t).Traces {
		var raws [][]byte
		var want []Hash
		for _, h := range tr.Changes {
			b := unhex(t, h)
			raws = append(raws, b)
			c, err := decodeChangeChunk(b, unlimited())
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, c.hash)
		}
		jsDoc := unhex(t, tr.Doc)
		enc, err := EncodeDocument(raws)
		if err != nil {
			t.Fatalf("trace %d: %v", tr.Seed, err)
		}
		client, err := automerge.Load(jsDoc)
		if err != nil {
			t.Fatal(err)
		}
		heads := hashes(client.Heads())
		for name, b := range map[string][]byte{"the JS document": jsDoc, "EncodeDocument": enc} {
			got, hs, err := DocumentChanges(b)
			if err != nil {
				t.Fatalf("trace %d: %s: %v", tr.Seed, name, err)
			}
			// The JS document may order concurrent changes otherwise:
			// compare as sets, and bytes by hash.
			byHash := map[Hash][]byte{}
			for i, h := range hs {
				byHash[h] = got[i]
			}
			for i, h := range want {
				if !bytes.Equal(byHash[h], raws[i]) {
					t.Fatalf("trace %d: %s: change %d rebuilt as %x, want %x", tr.Seed, name, i, byHash[h], raws[i])
				}
			}
			if len(hs) != len(want) {
				t.Fatalf("trace %d: %s: %d changes, want %d", tr.Seed, name, len(hs), len(want))
			}
		}
		core, err := automerge.Load(enc)
		if err != nil {
			t.Fatalf("trace %d: the core does not load EncodeDocument's output: %v", tr.Seed, err)
		}
		if !slices.Equal(hashes(core.Heads()), heads) {
			t.Fatalf("trace %d: EncodeDocument's output loads with other heads", tr.Seed)
		}
	}
}
