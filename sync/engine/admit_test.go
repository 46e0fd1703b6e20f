package engine

import (
	"errors"
	"slices"
	"testing"
)

// fakeHolder is a validator outside the Document that holds changes whose
// deps are not in the graph, as sync/core's Doc does.
type fakeHolder struct {
	g    *Graph
	held map[Hash]*Change
}

func (h *fakeHolder) Pending() int { return len(h.held) }

func (h *fakeHolder) PendingDeps(x Hash) ([]Hash, bool) {
	c, ok := h.held[x]
	if !ok {
		return nil, false
	}
	return c.Deps, true
}

func (h *fakeHolder) admit(fresh []*Change) ([]*Change, error) {
	var out []*Change
	in := map[Hash]bool{}
	ready := func(c *Change) bool {
		for _, d := range c.Deps {
			if !h.g.Has(d) && !in[d] {
				return false
			}
		}
		return true
	}
	for _, c := range fresh {
		h.held[c.Hash] = c.own()
	}
	for progress := true; progress; {
		progress = false
		for x, c := range h.held {
			if ready(c) {
				out = append(out, c)
				in[x] = true
				delete(h.held, x)
				progress = true
			}
		}
	}
	return out, nil
}

// A change held outside the Document is asked for through need, and
// added to the graph with the change it waited for once that arrives.
func TestApplyAdmittedWithHeldOutside(t *testing.T) {
	_, raw := linearDoc(t, 5, 1)
	h := &fakeHolder{held: map[Hash]*Change{}}
	d := NewDocument(Options{HeldOutside: h})
	h.g = d.Graph()
	if _, err := d.Add(parseAll(t, raw[:3])); err != nil {
		t.Fatal(err)
	}
	c4, c5 := parseAll(t, raw[3:4])[0], parseAll(t, raw[4:5])[0]
	shared := d.Heads()
	s := NewSyncState()
	msg := func(cs ...*Change) *Message {
		return &Message{Version: MessageV1, Heads: []Hash{c5.Hash}, Have: []Have{{LastSync: shared}}, Changes: cs}
	}
	res, err := s.ApplyAdmitted(d, msg(c5), h.admit)
	if err != nil || len(res.Added) != 0 || res.Held != 1 || d.Graph().Has(c5.Hash) {
		t.Fatalf("added %d, held %d, err %v", len(res.Added), res.Held, err)
	}
	out, ok := s.Generate(d)
	if !ok {
		t.Fatal("no message asking for the missing change")
	}
	m, err := DecodeMessage(out)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.Need, []Hash{c4.Hash}) || len(m.Have) != 0 {
		t.Fatalf("need %x, %d haves; want the held change's dep and no filter", m.Need, len(m.Have))
	}
	res, err = s.ApplyAdmitted(d, msg(c4), h.admit)
	if err != nil || len(res.Added) != 2 || res.Held != 0 {
		t.Fatalf("added %d, held %d, err %v", len(res.Added), res.Held, err)
	}
	if !slices.Equal(d.Heads(), []Hash{c5.Hash}) {
		t.Fatal("the graph does not have both changes")
	}
	// Changes the graph has do not go to admit; a refusal changes nothing.
	s = NewSyncState()
	if _, err := s.ApplyAdmitted(d, msg(c4), func([]*Change) ([]*Change, error) {
		t.Fatal("a change the graph has went to admit")
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("refused")
	s = NewSyncState()
	_, raw6 := linearDoc(t, 6, 1)
	c6 := parseAll(t, raw6[5:])[0]
	if _, err := s.ApplyAdmitted(d, msg(c6), func([]*Change) ([]*Change, error) { return nil, refuse }); !errors.Is(err, refuse) {
		t.Fatalf("got %v", err)
	}
	if _, ok := s.TheirHeads(); ok || d.Graph().Has(c6.Hash) {
		t.Fatal("a refused message changed the state or the graph")
	}
}

// A resumed state keeps only the shared heads the document has, and
// saved bytes that do not decode give a fresh state.
func TestResumeSyncState(t *testing.T) {
	_, raw := linearDoc(t, 3, 1)
	d := docOf(t, raw)
	known := d.Heads()[0]
	saved := (&SyncState{sharedHeads: sortHashes([]Hash{known, {7}})}).Encode()
	if got := d.ResumeSyncState(saved).SharedHeads(); !slices.Equal(got, []Hash{known}) {
		t.Fatalf("shared heads %x", got)
	}
	for _, bad := range [][]byte{nil, {0x42, 0}, append(slices.Clone(saved), 0)} {
		if got := d.ResumeSyncState(bad).SharedHeads(); len(got) != 0 {
			t.Fatalf("%x: shared heads %x", bad, got)
		}
	}
}

func parseAll(t *testing.T, raw [][]byte) []*Change {
	t.Helper()
	out := make([]*Change, len(raw))
	for i, r := range raw {
		c, err := ParseChange(r)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = c
	}
	return out
}
