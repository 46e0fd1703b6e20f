package core

import (
	"errors"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// chainA returns the base change and then n-1 changes by A, each setting
// root key "q" over the last.
func chainA(n int) []*testChange {
	cs := []*testChange{baseChange()}
	for i := 1; i < n; i++ {
		c := &testChange{deps: []Hash{cs[i-1].hash()}, actor: actorA, seq: uint64(i + 1), startOp: uint64(7 + i), time: int64(i),
			ops: []changeOp{{key: prop("q"), action: actSet, val: vInt(int64(i))}}}
		if i > 1 {
			c.ops[0].preds = []ref{{0, uint64(7 + i - 1)}}
		}
		cs = append(cs, c)
	}
	return cs
}

func chunksOf(cs []*testChange) [][]byte {
	var out [][]byte
	for _, c := range cs {
		out = append(out, c.chunk())
	}
	return out
}

// parseOwn parses a message the server generated.
func parseOwn(t *testing.T, msg []byte) syncMessage {
	t.Helper()
	lim := DefaultLimits()
	m, err := parseSyncMessage(msg, &lim)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestOutOfOrderChangeIsHeld is the reported bug: a peer whose change 26
// is still in flight (or was skipped for a Bloom filter false positive)
// sends change 27, which the server refused ("change … has seq 27, but the
// actor's last known change is seq 25"). Now it is held, the server asks
// for 26, and both apply when 26 arrives.
func TestOutOfOrderChangeIsHeld(t *testing.T) {
	chain := chainA(27)
	d, err := Load(nil, chunksOf(chain[:25]))
	if err != nil {
		t.Fatal(err)
	}
	s := d.NewSyncState()
	h26, h27 := chain[25].hash(), chain[26].hash()
	msg := syncMessage{heads: []Hash{h27}, haves: []have{{}}}
	got, err := s.Receive(msg.encode([]*changeChunk{mustDecodeChunk(t, chain[26].chunk())}))
	if err != nil {
		t.Fatalf("a legitimate out-of-order change was refused: %v", err)
	}
	if len(got) != 0 || d.Pending() != 1 || d.Has(h27) {
		t.Fatalf("returned %d changes, %d held", len(got), d.Pending())
	}
	out, ok := s.Generate()
	if !ok {
		t.Fatal("no message to ask for the missing change")
	}
	m := parseOwn(t, out)
	if !slices.Equal(m.need, []Hash{h26}) || len(m.haves) != 0 {
		t.Fatalf("need %x, %d haves; want the missing change and no Bloom filter", m.need, len(m.haves))
	}
	// The peer answers with 26.
	msg.changes = nil
	got, err = s.Receive(msg.encode([]*changeChunk{mustDecodeChunk(t, chain[25].chunk())}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Hash != h26 || got[1].Hash != h27 || d.Pending() != 0 {
		t.Fatalf("applied %d changes, %d still held", len(got), d.Pending())
	}
	if !slices.Equal(d.Heads(), []Hash{h27}) {
		t.Fatal("heads are not change 27")
	}
	// The core's queue was never used: its next message needs nothing.
	if out, ok := s.Generate(); ok && len(parseOwn(t, out).need) != 0 {
		t.Fatal("still asks for something")
	}
}

// TestBloomFalsePositiveWithRealClient syncs a stock client whose offline
// changes the server's Bloom filter claims to have (a false positive, forced
// here by a filter with every bit set): the client sends only its head,
// the server holds it, asks for what it depends on, and catches up.
func TestBloomFalsePositiveWithRealClient(t *testing.T) {
	client := automerge.New()
	server := NewDoc()
	edit := func(v int64) {
		if err := client.RootMap().Set("k", v); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Commit("c"); err != nil {
			t.Fatal(err)
		}
	}
	ss, cs := server.NewSyncState(), automerge.NewSyncState(client)
	held := 0
	exchange := func(falsePositive bool) {
		for range 20 {
			progress := false
			// The server speaks first, so that the client sends its
			// changes against the server's (doctored) filter.
			if m, ok := ss.Generate(); ok {
				progress = true
				if falsePositive {
					pm := parseOwn(t, m)
					for i := range pm.haves {
						pm.haves[i].bloom = []byte{1, 10, 7, 0xff, 0xff}
					}
					m = pm.encode(pm.changes)
				}
				if _, err := cs.ReceiveMessage(m); err != nil {
					t.Fatal(err)
				}
			}
			if m, ok := cs.GenerateMessage(); ok {
				progress = true
				if _, err := ss.Receive(m.Bytes()); err != nil {
					t.Fatalf("refused: %v", err)
				}
				held = max(held, server.Pending())
			}
			if !progress {
				return
			}
		}
		t.Fatal("sync did not settle")
	}
	edit(1)
	exchange(false)
	edit(2)
	edit(3)
	edit(4)
	// The client reconnects: both sides start over.
	ss, cs = server.NewSyncState(), automerge.NewSyncState(client)
	exchange(true)
	if !slices.Equal(server.Heads(), hashes(client.Heads())) || server.Pending() != 0 {
		t.Fatalf("server did not catch up (%d held)", server.Pending())
	}
	if held == 0 {
		t.Fatal("the false positive did not make the server hold a change")
	}
}

// TestHeldChangeThatTurnsOutInvalid: a change held for its dependencies is
// validated when they arrive; if it fails then, it is dropped, and the
// message that brought the dependencies is not refused for it.
func TestHeldChangeThatTurnsOutInvalid(t *testing.T) {
	d := baseDoc(t)
	// A's second change makes a list (8@A).
	a2 := &testChange{deps: []Hash{baseChange().hash()}, actor: actorA, seq: 2, startOp: 8,
		ops: []changeOp{{key: prop("new"), action: actMakeList}}}
	// B puts a map key into that list, before the list reached the server.
	evil := &testChange{deps: []Hash{a2.hash()}, actor: actorB, seq: 1, startOp: 9, others: [][]byte{actorA},
		ops: []changeOp{{obj: ref{1, 8}, key: prop("boom"), action: actSet, val: vInt(1)}}}
	if out := accept(t, d, evil.chunk()); len(out) != 0 || d.Pending() != 1 {
		t.Fatalf("held %d", d.Pending())
	}
	out := accept(t, d, a2.chunk())
	if len(out) != 1 || out[0].Hash != a2.hash() || d.Pending() != 0 || d.Has(evil.hash()) {
		t.Fatalf("applied %d, held %d", len(out), d.Pending())
	}
	// Within one message it refuses the message.
	d = baseDoc(t)
	refuse(t, d, `map key "boom" on a sequence object`, evil.chunk(), a2.chunk())
}

func TestHeldChangesAreBounded(t *testing.T) {
	chain := chainA(12)
	d := baseDoc(t)
	d.SetLimits(Limits{MaxPendingChanges: 3})
	// One message whose held changes alone do not fit is refused.
	_, err := d.NewSyncState().Receive(messageOf(chunksOf(chain[2:6])...))
	if !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("got %v", err)
	}
	// Over several messages, the longest held go.
	s := d.NewSyncState()
	for i := 2; i < 12; i += 2 {
		if _, err := s.Receive(messageOf(chunksOf(chain[i : i+2])...)); err != nil {
			t.Fatal(err)
		}
	}
	if d.Pending() != 3 {
		t.Fatalf("%d held", d.Pending())
	}
	for _, c := range chain[9:] {
		if !d.pending.has(c.hash()) {
			t.Fatal("a recent held change was dropped")
		}
	}
}

func TestHeldChangesSurviveSaveAndLoad(t *testing.T) {
	chain := chainA(4)
	d, err := Load(nil, [][]byte{chain[0].chunk(), chain[1].chunk(), chain[3].chunk()})
	if err != nil {
		t.Fatalf("an orphan in the log failed the load: %v", err)
	}
	if d.Pending() != 1 {
		t.Fatalf("%d held", d.Pending())
	}
	re, err := Load(d.Save(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if re.Pending() != 1 || !slices.Equal(re.Heads(), d.Heads()) {
		t.Fatal("the held change did not survive the snapshot")
	}
	if out := accept(t, re, chain[2].chunk()); len(out) != 2 || !slices.Equal(re.Heads(), []Hash{chain[3].hash()}) {
		t.Fatalf("applied %d", len(out))
	}
}

func TestDuplicatesAreSkipped(t *testing.T) {
	chain := chainA(3)
	d := baseDoc(t)
	if out := accept(t, d, chain[2].chunk(), chain[2].chunk()); len(out) != 0 || d.Pending() != 1 {
		t.Fatal("a duplicate held change counted twice")
	}
	accept(t, d, chain[2].chunk())
	if out := accept(t, d, chain[1].chunk(), chain[1].chunk(), chain[0].chunk()); len(out) != 2 {
		t.Fatalf("applied %d", len(out))
	}
	if out := accept(t, d, chain[1].chunk()); len(out) != 0 {
		t.Fatal("an applied change was applied again")
	}
}

// TestIndexFollowsLocalEdits: edits made through Automerge() (the HTTP API)
// reach the index before the next peer change is validated.
func TestIndexFollowsLocalEdits(t *testing.T) {
	d := baseDoc(t)
	local := automerge.NewList()
	if err := d.Automerge().RootMap().Set("local", local); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Automerge().Commit("api"); err != nil {
		t.Fatal(err)
	}
	chs, err := d.Automerge().Changes(automerge.ChangeHash(baseChange().hash()))
	if err != nil || len(chs) != 1 {
		t.Fatal(err)
	}
	lc := mustDecodeChunk(t, chs[0].Save())
	// B inserts into the server's list: it must be known as a list.
	c := &testChange{deps: []Hash{lc.hash}, actor: actorB, seq: 1, startOp: lc.startOp + 1, others: [][]byte{lc.actor},
		ops: []changeOp{{obj: ref{1, lc.startOp}, key: head(), insert: true, action: actSet, val: vInt(1)}}}
	accept(t, d, c.chunk())
	bad := &testChange{deps: []Hash{c.hash()}, actor: actorB, seq: 2, startOp: lc.startOp + 2, others: [][]byte{lc.actor},
		ops: []changeOp{{obj: ref{1, lc.startOp}, key: prop("x"), action: actSet, val: vInt(1)}}}
	refuse(t, d, "on a sequence object", bad.chunk())
}

func mustDecodeChunk(t testing.TB, b []byte) *changeChunk {
	t.Helper()
	lim := DefaultLimits()
	c, err := decodeChangeChunk(b, &lim)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestResetMessagesAreLeftAlone: when the peer's last sync is unknown the
// core sends a reset message, which asks for nothing; Generate keeps it so
// even with held changes.
func TestResetMessagesAreLeftAlone(t *testing.T) {
	chain := chainA(3)
	d := baseDoc(t)
	s := d.NewSyncState()
	unknown := Hash{9}
	msg := syncMessage{heads: []Hash{chain[2].hash()}, haves: []have{{lastSync: []Hash{unknown}}}}
	if _, err := s.Receive(msg.encode([]*changeChunk{mustDecodeChunk(t, chain[2].chunk())})); err != nil {
		t.Fatal(err)
	}
	if d.Pending() != 1 {
		t.Fatal("not held")
	}
	out, ok := s.Generate()
	if !ok {
		t.Fatal("no message")
	}
	if m := parseOwn(t, out); len(m.need) != 0 || len(m.haves) != 1 || len(m.haves[0].lastSync) != 0 {
		t.Fatalf("not a reset message: need %x, haves %v", m.need, m.haves)
	}
}
