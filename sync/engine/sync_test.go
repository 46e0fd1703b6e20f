package engine

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// syncPair runs the protocol between an engine document and an
// automerge-go peer until neither has anything to send, and returns the
// engine's messages.
func syncPair(t *testing.T, d *Document, s *SyncState, peer *automerge.Doc, ps *automerge.SyncState) [][]byte {
	t.Helper()
	var sent [][]byte
	for range 100 {
		progress := false
		if m, ok := ps.GenerateMessage(); ok {
			progress = true
			if _, err := s.Receive(d, m.Bytes()); err != nil {
				t.Fatal(err)
			}
		}
		if m, ok := s.Generate(d); ok {
			progress = true
			sent = append(sent, m)
			if _, err := ps.ReceiveMessage(m); err != nil {
				t.Fatal(err)
			}
		}
		if !progress {
			return sent
		}
	}
	t.Fatal("no quiescence")
	return nil
}

// TestResetMatchesCore: a server that lost its data gets a resumed peer's
// message whose last sync it does not know; it answers with the core's
// reset message, byte for byte, and the peer sends everything again.
func TestResetMatchesCore(t *testing.T) {
	peer, _ := linearDoc(t, 5, 2)
	// The peer syncs with a server, and saves its state.
	ps := automerge.NewSyncState(peer)
	first := NewDocument(Options{})
	syncPair(t, first, NewSyncState(), peer, ps)
	saved := ps.Save()
	msgFor := func() []byte {
		st, err := automerge.LoadSyncState(peer, saved)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := st.GenerateMessage()
		if !ok {
			t.Fatal("no message")
		}
		return m.Bytes()
	}
	// The core, empty again.
	core := automerge.New()
	cs := automerge.NewSyncState(core)
	if _, err := cs.ReceiveMessage(msgFor()); err != nil {
		t.Fatal(err)
	}
	want, ok := cs.GenerateMessage()
	if !ok {
		t.Fatal("core sent nothing")
	}
	// The engine, empty again.
	d := NewDocument(Options{})
	s := NewSyncState()
	if _, err := s.Receive(d, msgFor()); err != nil {
		t.Fatal(err)
	}
	got, ok := s.Generate(d)
	if !ok || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("reset:\ncore %x\nours %x", want.Bytes(), got)
	}
	if !bytes.Equal(got, []byte{0x42, 0, 0, 1, 0, 0, 0}) {
		t.Fatalf("reset of an empty document: %x", got)
	}
	st, _ := automerge.LoadSyncState(peer, saved)
	syncPair(t, d, s, peer, st)
	if !slices.Equal(d.Heads(), heads(peer)) {
		t.Fatal("no convergence after the reset")
	}
}

// TestPeerLostData: a peer that comes back empty (heads []) is sent
// everything again, though the server's state remembers sending it.
func TestPeerLostData(t *testing.T) {
	doc, raw := linearDoc(t, 6, 2)
	d := docOf(t, raw)
	s := NewSyncState()
	syncPair(t, d, s, doc, automerge.NewSyncState(doc))
	fresh := automerge.New()
	sent := syncPair(t, d, s, fresh, automerge.NewSyncState(fresh))
	if !slices.Equal(heads(fresh), d.Heads()) {
		t.Fatal("the empty peer did not get the document")
	}
	n := 0
	for _, m := range sent {
		msg, _ := DecodeMessage(m)
		n += len(msg.Changes)
	}
	if n != 6 {
		t.Fatalf("%d changes sent again, want 6", n)
	}
	if s.Encode()[0] != 0x43 {
		t.Fatal("state encoding")
	}
	if again, err := DecodeSyncState(s.Encode()); err != nil || !slices.Equal(again.SharedHeads(), d.Heads()) {
		t.Fatalf("state round trip: %v", err)
	}
}

// TestReadOnlyPeer: a read-only peer's changes are dropped, it gets ours,
// and the exchange ends although its heads stay different.
func TestReadOnlyPeer(t *testing.T) {
	_, raw := linearDoc(t, 4, 1)
	d := docOf(t, raw)
	peer := newAMPeer(t, 1)
	peer.edit(t, rand.New(rand.NewPCG(3, 3)), 2)
	s := NewSyncState()
	s.SetReadOnly(true)
	ps := automerge.NewSyncState(peer.doc)
	var dropped int
	for range 20 {
		progress := false
		if m, ok := ps.GenerateMessage(); ok {
			progress = true
			res, err := s.Receive(d, m.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			dropped += res.Dropped
		}
		if m, ok := s.Generate(d); ok {
			progress = true
			msg, _ := DecodeMessage(m)
			if len(msg.Need) > 0 {
				t.Fatal("a read-only peer was asked for changes")
			}
			if _, err := ps.ReceiveMessage(m); err != nil {
				t.Fatal(err)
			}
		}
		if !progress {
			break
		}
	}
	if d.Graph().Len() != 4 {
		t.Fatalf("the document took a read-only peer's changes: %d", d.Graph().Len())
	}
	for _, h := range d.Heads() {
		if _, err := peer.doc.Change(automerge.ChangeHash(h)); err != nil {
			t.Fatal("the read-only peer lacks our changes")
		}
	}
	if dropped == 0 {
		t.Fatal("nothing dropped")
	}
	if _, ok := s.Generate(d); ok {
		t.Fatal("still sending")
	}
}

// TestHeldChanges: changes given out of order are held and released in
// causal order; the holding is bounded; a failed check changes nothing.
func TestHeldChanges(t *testing.T) {
	_, raw := linearDoc(t, 6, 2)
	var cs []*Change
	for _, b := range raw {
		c, _ := ParseChange(b)
		cs = append(cs, c)
	}
	d := NewDocument(Options{})
	added, err := d.Add([]*Change{cs[5], cs[3], cs[4]})
	if err != nil || len(added) != 0 || d.Held() != 3 {
		t.Fatalf("held: %v %d %d", err, len(added), d.Held())
	}
	// need: walking from the peer's heads through what is held (the
	// core makes each change depend on its actor's previous one too).
	if need := d.missingDepsFrom([]Hash{cs[5].Hash}); !slices.Equal(need, sortedHashes([]Hash{cs[1].Hash, cs[2].Hash})) {
		t.Fatalf("need %x", need)
	}
	added, err = d.Add([]*Change{cs[2], cs[1], cs[0]})
	if err != nil || d.Held() != 0 || len(added) != 6 {
		t.Fatalf("released: %v held %d added %d", err, d.Held(), len(added))
	}
	for i, c := range added {
		if c.Hash != cs[i].Hash {
			t.Fatalf("added out of causal order at %d", i)
		}
	}

	small := NewDocument(Options{MaxHeldChanges: 2})
	if _, err := small.Add([]*Change{cs[3], cs[4], cs[5]}); !errors.Is(err, ErrTooManyHeld) {
		t.Fatalf("bound: %v", err)
	}
	if _, err := small.Add([]*Change{cs[4], cs[5]}); err != nil || small.Held() != 2 {
		t.Fatal(err)
	}
	if _, err := small.Add([]*Change{cs[2]}); err != nil || small.Held() != 2 {
		t.Fatalf("eviction: %v %d", err, small.Held()) // cs[4] went
	}

	refuse := errors.New("invalid")
	checked := NewDocument(Options{Check: func(ready []*Change) error {
		if len(ready) > 2 {
			return refuse
		}
		return nil
	}})
	if _, err := checked.Add(cs[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := checked.Add([]*Change{cs[5], cs[2], cs[3], cs[4]}); !errors.Is(err, refuse) {
		t.Fatalf("check: %v", err)
	}
	if checked.Graph().Len() != 2 || checked.Held() != 0 {
		t.Fatal("a refused batch changed the document")
	}
	// A change that repeats its actor's seq is refused with the batch.
	dup := *cs[2]
	dup.Hash[31] ^= 1
	dup.Seq = 1
	if _, err := checked.Add([]*Change{&dup}); !errors.Is(err, ErrSeq) {
		t.Fatalf("seq: %v", err)
	}
}

// TestMessageForms: V2 entries of several chunks, the trailer's flags, and
// a read-only peer's flag that stops us sending it changes.
func TestMessageForms(t *testing.T) {
	_, raw := linearDoc(t, 3, 1)
	var cs []*Change
	for _, b := range raw {
		c, _ := ParseChange(b)
		cs = append(cs, c)
	}
	m := &Message{Version: MessageV2, Heads: []Hash{cs[2].Hash}, Changes: cs}
	b := m.Encode()
	got, err := DecodeMessage(append(b, 2, 2, 0x80|FlagReadOnly|FlagSupportsSyncReset))
	if err != nil || len(got.Changes) != 3 || got.Changes[2].Hash != cs[2].Hash {
		t.Fatalf("V2: %v", err)
	}
	if !got.Trailer || got.Flags != FlagReadOnly|FlagSupportsSyncReset {
		t.Fatalf("flags %x", got.Flags)
	}
	d := docOf(t, raw)
	s := NewSyncState()
	peer := &Message{Version: MessageV1, Have: []Have{{}}, Trailer: true, Flags: FlagReadOnly}
	if _, err := s.Apply(d, peer); err != nil {
		t.Fatal(err)
	}
	out, ok := s.Generate(d)
	if !ok {
		t.Fatal("nothing sent")
	}
	if msg, _ := DecodeMessage(out); len(msg.Changes) != 0 {
		t.Fatal("changes sent to a read-only peer")
	}
	for _, bad := range [][]byte{nil, {0x44}, {0x42, 1}, append(slices.Clone(b[:len(b)-3]), 0)} {
		if _, err := DecodeMessage(bad); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("%x decoded: %v", bad, err)
		}
	}
	for i := range b {
		DecodeMessage(b[:i]) // must not panic
	}
}
