package engine

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// snapshotOf returns what automerge-go's save() makes of the given changes
// (what a room's compaction stores).
func snapshotOf(t testing.TB, raw [][]byte) []byte {
	t.Helper()
	d := automerge.New()
	if err := d.LoadIncremental(bytes.Join(raw, nil)); err != nil {
		t.Fatal(err)
	}
	return d.Save()
}

// driveJS runs the protocol between the engine and JS peer id until
// neither sends anything, and returns the engine's messages.
func driveJS(t *testing.T, js *jsPeers, id int, d *Document, s *SyncState) [][]byte {
	t.Helper()
	var sent [][]byte
	for range 100 {
		progress := false
		if r := js.call(map[string]any{"op": "gen", "id": id}); r.Err != "" {
			t.Fatal(r.Err)
		} else if r.Msg != nil {
			progress = true
			b, _ := hex.DecodeString(*r.Msg)
			if _, err := s.Receive(d, b); err != nil {
				t.Fatal(err)
			}
		}
		if m, ok := s.Generate(d); ok {
			progress = true
			sent = append(sent, m)
			if r := js.call(map[string]any{"op": "recv", "id": id, "msg": hex.EncodeToString(m)}); r.Err != "" {
				t.Fatalf("JS refused %.40x…: %s", m, r.Err)
			}
		}
		if !progress {
			return sent
		}
	}
	t.Fatal("no quiescence")
	return nil
}

// extend adds one change to the automerge-go document and returns its
// bytes.
func extend(t testing.TB, doc *automerge.Doc, i int) []byte {
	t.Helper()
	if err := doc.RootMap().Set(fmt.Sprintf("x%d", i), int64(i)); err != nil {
		t.Fatal(err)
	}
	ts := time.UnixMilli(1_700_000_000_000)
	h, err := doc.Commit("", automerge.CommitOptions{Time: &ts})
	if err != nil {
		t.Fatal(err)
	}
	c, err := doc.Change(h)
	if err != nil {
		t.Fatal(err)
	}
	return c.Save()
}

func addRaw(t testing.TB, d *Document, raw []byte) {
	t.Helper()
	c, err := ParseChange(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Add([]*Change{c}); err != nil {
		t.Fatal(err)
	}
}

// TestWholeDocFreshV2Peer: a JS peer that has nothing gets the document in
// one V2 message, the snapshot followed by the changes after it, and
// converges; a change made before it answers is sent on its own, and
// nothing is sent twice.
func TestWholeDocFreshV2Peer(t *testing.T) {
	js := startJS(t)
	doc, raw := linearDoc(t, 2000, 3)
	snap := snapshotOf(t, raw[:1900])
	d := docOf(t, raw)
	if err := d.SetSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	js.call(map[string]any{"op": "new", "id": 1, "actor": fmt.Sprintf("%032x", 0x77)})
	first := js.call(map[string]any{"op": "gen", "id": 1})
	if first.Msg == nil {
		t.Fatal("the JS peer sent nothing")
	}
	m, _ := hex.DecodeString(*first.Msg)
	s := NewSyncState()
	if _, err := s.Receive(d, m); err != nil {
		t.Fatal(err)
	}
	out, ok := s.Generate(d)
	if !ok {
		t.Fatal("no message")
	}
	tail := 0
	for _, r := range raw[1900:] {
		tail += len(r)
	}
	all := 0
	for _, r := range raw {
		all += len(r)
	}
	if out[0] != MessageV2 {
		t.Fatalf("message type 0x%02x", out[0])
	}
	if len(out) > len(snap)+tail+200 {
		t.Fatalf("message of %d bytes for a snapshot of %d and %d bytes of changes after it", len(out), len(snap), tail)
	}
	r := js.call(map[string]any{"op": "decode", "msg": hex.EncodeToString(out)})
	if r.Err != "" || r.Changes != 1 || !slices.Equal(r.Heads, hexHashes(d.Heads())) {
		t.Fatalf("JS read %+v", r)
	}
	if s.sentAll != uint32(len(raw)) || len(s.sent) != 0 || !s.wasSent(0) || !s.wasSent(1999) {
		t.Fatalf("sent: %d below, %d more", s.sentAll, len(s.sent))
	}
	t.Logf("whole document: %d bytes (snapshot %d, %d changes after it %d bytes); as changes: %d bytes",
		len(out), len(snap), len(raw)-1900, tail, all)

	// Another change arrives before the peer answers: only it is sent.
	addRaw(t, d, extend(t, doc, 1))
	out2, ok := s.Generate(d)
	if !ok {
		t.Fatal("no message for the new change")
	}
	m2, err := DecodeMessage(out2)
	if err != nil || m2.Version != MessageV1 || len(m2.Changes) != 1 {
		t.Fatalf("second message: %v %+v", err, m2)
	}
	for _, b := range [][]byte{out, out2} {
		if r := js.call(map[string]any{"op": "recv", "id": 1, "msg": hex.EncodeToString(b)}); r.Err != "" {
			t.Fatal(r.Err)
		}
	}
	rest := driveJS(t, js, 1, d, s)
	for _, b := range rest {
		if m, err := DecodeMessage(b); err != nil || len(m.Changes) > 0 {
			t.Fatalf("later message resends changes: %v %+v", err, m)
		}
	}
	if got := js.call(map[string]any{"op": "heads", "id": 1}).Heads; !slices.Equal(got, hexHashes(d.Heads())) {
		t.Fatalf("JS peer at %v, the engine at %v", got, hexHashes(d.Heads()))
	}
	if s.sentAll != 0 || len(s.sent) != 0 || s.InFlight() {
		t.Fatalf("after the ack: sent %d below, %d more, in flight %v", s.sentAll, len(s.sent), s.InFlight())
	}
	saved := js.call(map[string]any{"op": "save", "id": 1}).Size
	t.Logf("the JS peer's save(): %d bytes; automerge-go's snapshot: %d", saved, len(snap))

	// The peer's own change comes back to the engine.
	js.call(map[string]any{"op": "edit", "id": 1, "n": 2, "seed": 5})
	driveJS(t, js, 1, d, s)
	if got := js.call(map[string]any{"op": "heads", "id": 1}).Heads; !slices.Equal(got, hexHashes(d.Heads())) || d.Graph().Len() != len(raw)+3 {
		t.Fatalf("after the peer's edits: JS at %v, the engine at %v (%d changes)", got, hexHashes(d.Heads()), d.Graph().Len())
	}
}

// TestWholeDocOneThird: a V2 peer that lacks more than a third of the
// changes gets the whole document; one that lacks fewer gets them.
func TestWholeDocOneThird(t *testing.T) {
	js := startJS(t)
	doc, raw := linearDoc(t, 900, 2)
	d := docOf(t, raw[:300])
	near := docOf(t, raw[:880])
	for i, dd := range []*Document{d, near} {
		js.call(map[string]any{"op": "new", "id": 10 + i, "actor": fmt.Sprintf("%032x", 0x90+i)})
		driveJS(t, js, 10+i, dd, NewSyncState()) // no snapshot: changes
	}
	// The server goes on to 900 changes and compacts; the peers come back.
	for _, r := range raw[300:] {
		addRaw(t, d, r)
	}
	extra := extend(t, doc, 1)
	addRaw(t, d, extra)
	if err := d.SetSnapshot(snapshotOf(t, raw)); err != nil {
		t.Fatal(err)
	}
	for i, want := range []byte{MessageV2, MessageV1} {
		id := 10 + i
		js.call(map[string]any{"op": "reset", "id": id})
		sent := driveJS(t, js, id, d, NewSyncState())
		var types []byte
		for _, b := range sent {
			types = append(types, b[0])
		}
		if !slices.Contains(types, want) || (want == MessageV1 && slices.Contains(types, MessageV2)) {
			t.Fatalf("peer %d: message types %x, want %02x", i, types, want)
		}
		if got := js.call(map[string]any{"op": "heads", "id": id}).Heads; !slices.Equal(got, hexHashes(d.Heads())) {
			t.Fatalf("peer %d did not converge", i)
		}
	}
}

// TestWholeDocNotForV1Peers: a peer that sends no trailer (automerge-go,
// the 0.5 core, which refuses V2 messages and document chunks) is sent
// the changes as before, whatever snapshot the document has.
func TestWholeDocNotForV1Peers(t *testing.T) {
	_, raw := linearDoc(t, 300, 2)
	d := docOf(t, raw)
	if err := d.SetSnapshot(snapshotOf(t, raw)); err != nil {
		t.Fatal(err)
	}
	plain := docOf(t, raw)
	peer, peerPlain := automerge.New(), automerge.New()
	got := syncPair(t, d, NewSyncState(), peer, automerge.NewSyncState(peer))
	want := syncPair(t, plain, NewSyncState(), peerPlain, automerge.NewSyncState(peerPlain))
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatal("a snapshot changed the messages to a V1 peer")
	}
	if !slices.Equal(heads(peer), d.Heads()) {
		t.Fatal("the peer did not converge")
	}
}

// TestSetSnapshot: what SetSnapshot refuses, and that it keeps only the
// document chunk of what a store saved.
func TestSetSnapshot(t *testing.T) {
	_, raw := linearDoc(t, 20, 2)
	snap := snapshotOf(t, raw[:10])
	d := docOf(t, raw[:5])
	if err := d.SetSnapshot(snap); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a snapshot ahead of the graph: %v", err)
	}
	d = docOf(t, raw)
	for _, b := range [][]byte{raw[0], snap[:len(snap)-1], {1, 2, 3}, append(slices.Clone(snap[:8]), 9)} {
		if err := d.SetSnapshot(b); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("%.16x…: %v", b, err)
		}
		if doc, _ := d.Snapshot(); doc != nil {
			t.Fatal("a refused snapshot is kept")
		}
	}
	bad := slices.Clone(snap)
	bad[len(bad)-1] ^= 1
	if err := d.SetSnapshot(bad); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("bad checksum: %v", err)
	}
	withChanges := append(slices.Clone(snap), raw[10]...)
	if err := d.SetSnapshot(withChanges); err != nil {
		t.Fatal(err)
	}
	if doc, hs := d.Snapshot(); !bytes.Equal(doc, snap) || !slices.Equal(hs, []Hash{mustHash(t, raw[9])}) {
		t.Fatalf("kept %d bytes (the document chunk has %d), heads %x", len(doc), len(snap), hs)
	}
	if err := d.SetSnapshot(nil); err != nil {
		t.Fatal(err)
	}
	if doc, _ := d.Snapshot(); doc != nil {
		t.Fatal("SetSnapshot(nil) kept it")
	}
	// A snapshot of one change is larger than the change: not kept.
	one := docOf(t, raw[:1])
	if err := one.SetSnapshot(snapshotOf(t, raw[:1])); err != nil {
		t.Fatal(err)
	}
	if doc, _ := one.Snapshot(); doc != nil {
		t.Fatal("kept a snapshot larger than the changes it covers")
	}
}

func mustHash(t testing.TB, raw []byte) Hash {
	t.Helper()
	c, err := ParseChange(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c.Hash
}

// trailerMsg is the automerge-go peer's next message with the trailer of
// a current core (02 02 84) appended, as a JS 3.x client's messages carry.
func trailerMsg(t testing.TB, ps *automerge.SyncState) []byte {
	t.Helper()
	m, ok := ps.GenerateMessage()
	if !ok {
		t.Fatal("the peer sent nothing")
	}
	return append(m.Bytes(), 0x02, 0x02, 0x84)
}

// TestWholeDocBookkeeping (no JS needed): the whole-document message of a
// fresh trailer peer loads as the document, every change counts as sent
// until the peer's heads show it has them, and a later change is sent
// alone; SYNC_RESET and empty heads forget what was sent, as the core
// does.
func TestWholeDocBookkeeping(t *testing.T) {
	doc, raw := linearDoc(t, 400, 2)
	d := docOf(t, raw)
	if err := d.SetSnapshot(snapshotOf(t, raw[:350])); err != nil {
		t.Fatal(err)
	}
	peer := automerge.New()
	ps := automerge.NewSyncState(peer)
	s := NewSyncState()
	hello := trailerMsg(t, ps)
	if _, err := s.Receive(d, hello); err != nil {
		t.Fatal(err)
	}
	out, ok := s.Generate(d)
	if !ok || out[0] != MessageV2 {
		t.Fatalf("no V2 message: %v %.2x", ok, out)
	}
	if _, ok := s.Generate(d); ok {
		t.Fatal("a second message while the first is in flight")
	}
	// The entry (past heads, need, an empty-filter have of our heads, and
	// the entry count) loads as the whole document.
	pre := appendHashes([]byte{MessageV2}, d.Heads())
	pre = appendHashes(pre, nil)
	pre = appendHashes(leb128.AppendUint(pre, 1), d.Heads())
	pre = append(pre, 0, 1)
	if !bytes.HasPrefix(out, pre) {
		t.Fatalf("message starts %.80x, want %x", out, pre)
	}
	r := &reader{b: out[len(pre):]}
	entry := r.take(r.uleb())
	if r.err != nil || len(r.b) != 0 {
		t.Fatalf("entry: %v, %d bytes after it", r.err, len(r.b))
	}
	loaded, err := automerge.Load(entry)
	if err != nil || !slices.Equal(heads(loaded), d.Heads()) {
		t.Fatalf("the entry loads with heads %x (%v)", heads(loaded), err)
	}
	// A change before the peer answers: only it is sent.
	addRaw(t, d, extend(t, doc, 1))
	out2, ok := s.Generate(d)
	if !ok {
		t.Fatal("nothing sent for the new change")
	}
	if m, err := DecodeMessage(out2); err != nil || len(m.Changes) != 1 {
		t.Fatalf("second message: %v %+v", err, m)
	}
	// The peer, having loaded the entry, answers with the heads it has.
	lps := automerge.NewSyncState(loaded)
	if _, err := s.Receive(d, trailerMsg(t, lps)); err != nil {
		t.Fatal(err)
	}
	if s.sentAll != 0 || len(s.sent) != 1 {
		t.Fatalf("after the peer's heads: %d below, %d more sent (want only the new change)", s.sentAll, len(s.sent))
	}

	// Empty heads (the peer lost its data) and SYNC_RESET forget the
	// whole-document send: it is sent again.
	for _, trailer := range [][]byte{{0x02, 0x02, 0x84}, nil} {
		s := NewSyncState()
		if _, err := s.Receive(d, hello); err != nil {
			t.Fatal(err)
		}
		if out, ok := s.Generate(d); !ok || out[0] != MessageV2 {
			t.Fatal("no whole document")
		}
		again := slices.Clone(hello)
		if trailer == nil {
			again = append(again[:len(again)-3], 0x02, 0x02, 0x85) // SYNC_RESET
			m, _ := DecodeMessage(again)
			if m.Flags&FlagSyncReset == 0 {
				t.Fatal("no reset flag")
			}
		}
		if _, err := s.Receive(d, again); err != nil {
			t.Fatal(err)
		}
		if s.sentAll != 0 {
			t.Fatalf("sent not forgotten (trailer %x)", trailer)
		}
		if out, ok := s.Generate(d); !ok || out[0] != MessageV2 {
			t.Fatalf("the whole document is not sent again (trailer %x)", trailer)
		}
	}
}
