package engine

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
)

// The differential test: randomized sessions in which automerge-go peers
// (real documents and sync states) sync through a server, once with the
// engine as the server and once with automerge-go's core, on the same
// schedule of edits, deliveries, duplicates, reorders, disconnections and
// reconnects. Every session must converge on every side, and the engine
// must not send more bytes than the core.
//
// TestDifferential runs a few hundred sessions; set ENGINE_DIFF_SESSIONS
// (for example ENGINE_DIFF_SESSIONS=5000 go test -run TestDifferential
// ./sync/engine/) for the long mode, and ENGINE_DIFF_SEED to start
// elsewhere.

// server is the side under test.
type server interface {
	connect(p int, resume bool)
	receive(p int, msg []byte) (changed bool, err error)
	generate(p int) ([]byte, bool)
	heads() []Hash
	has(h Hash) bool
}

type engineServer struct {
	doc    *Document
	states []*SyncState
	held   int // changes the document held for missing deps, over the session
}

func (s *engineServer) connect(p int, resume bool) {
	if resume && s.states[p] != nil {
		st, err := DecodeSyncState(s.states[p].Encode())
		if err != nil {
			panic(err)
		}
		s.states[p] = st
		return
	}
	s.states[p] = NewSyncState()
}

func (s *engineServer) receive(p int, msg []byte) (bool, error) {
	res, err := s.states[p].Receive(s.doc, msg)
	s.held += res.Held
	return len(res.Added) > 0, err
}

func (s *engineServer) generate(p int) ([]byte, bool) { return s.states[p].Generate(s.doc) }
func (s *engineServer) heads() []Hash                 { return s.doc.Heads() }
func (s *engineServer) has(h Hash) bool               { return s.doc.g.Has(h) }

type coreServer struct {
	doc    *automerge.Doc
	states []*automerge.SyncState
}

func (s *coreServer) connect(p int, resume bool) {
	if resume && s.states[p] != nil {
		st, err := automerge.LoadSyncState(s.doc, s.states[p].Save())
		if err != nil {
			panic(err)
		}
		s.states[p] = st
		return
	}
	s.states[p] = automerge.NewSyncState(s.doc)
}

func (s *coreServer) receive(p int, msg []byte) (bool, error) {
	before := s.doc.Heads()
	_, err := s.states[p].ReceiveMessage(msg)
	return !slices.Equal(before, s.doc.Heads()), err
}

func (s *coreServer) generate(p int) ([]byte, bool) {
	m, ok := s.states[p].GenerateMessage()
	if !ok {
		return nil, false
	}
	return m.Bytes(), true
}

func (s *coreServer) heads() []Hash { return heads(s.doc) }

func (s *coreServer) has(h Hash) bool {
	_, err := s.doc.Change(automerge.ChangeHash(h))
	return err == nil
}

// client is a peer in a world: its document, and its sync state for the
// server.
type client interface {
	edit(r *rand.Rand, k int) // k local changes, drawn from r
	generate() ([]byte, bool) // its next message to the server
	receive(msg []byte) error // a message from the server
	restart(resume bool)      // a new session: its state resumed from the saved one, or fresh
	lose(gen int) client      // the peer lost its data: a new empty document, a new actor
	heads() []Hash            // its document's heads
	has(hs []Hash) []bool     // which of hs its document has
}

// amClient is an automerge-go peer and its sync state.
type amClient struct {
	t     testing.TB
	i     int // the peer's index: its actor is newAMPeer's i+16*generation
	peer  *amPeer
	state *automerge.SyncState
}

func newAMClient(t testing.TB, i, gen int) *amClient {
	p := newAMPeer(t, i+16*gen)
	return &amClient{t: t, i: i, peer: p, state: automerge.NewSyncState(p.doc)}
}

func (c *amClient) edit(r *rand.Rand, k int) { c.peer.edit(c.t, r, k) }

func (c *amClient) generate() ([]byte, bool) {
	m, ok := c.state.GenerateMessage()
	if !ok {
		return nil, false
	}
	return m.Bytes(), true
}

func (c *amClient) receive(msg []byte) error {
	_, err := c.state.ReceiveMessage(msg)
	return err
}

func (c *amClient) restart(resume bool) {
	if !resume {
		c.state = automerge.NewSyncState(c.peer.doc)
		return
	}
	st, err := automerge.LoadSyncState(c.peer.doc, c.state.Save())
	if err != nil {
		c.t.Fatal(err)
	}
	c.state = st
}

func (c *amClient) lose(gen int) client {
	n := newAMClient(c.t, c.i, gen)
	n.peer.clock = c.peer.clock
	return n
}

func (c *amClient) heads() []Hash { return heads(c.peer.doc) }

func (c *amClient) has(hs []Hash) []bool {
	out := make([]bool, len(hs))
	for i, h := range hs {
		_, err := c.peer.doc.Change(automerge.ChangeHash(h))
		out[i] = err == nil
	}
	return out
}

// world is one run of a session: a server, its peers, and the messages in
// flight each way.
type world struct {
	t       testing.TB
	srv     server
	peers   []client
	up      [][][]byte // peer → server
	down    [][][]byte // server → peer
	offline []bool
	gen     []int // how often each peer lost its data

	inOrder     bool   // no duplicates or reorders
	last        [2]int // the last step's action and peer
	trace       func(format string, args ...any)
	bytes, msgs int      // server → peers
	sent        [][]byte // what the server sent, in order
	sentTo      []int    // and to whom
	// For comparing two runs: the author's heads after each edit (equal
	// lists: both runs made the same changes), and a peer's heads when it
	// lost its data (if the server lacks them, changes were lost with it).
	edits [][]Hash
	lost  []Hash
}

// newWorld is a world of automerge-go peers.
func newWorld(t testing.TB, srv server, peers int) *world {
	cs := make([]client, peers)
	for i := range cs {
		cs[i] = newAMClient(t, i, 0)
	}
	return newWorldOf(t, srv, cs)
}

func newWorldOf(t testing.TB, srv server, peers []client) *world {
	n := len(peers)
	w := &world{t: t, srv: srv, peers: peers, up: make([][][]byte, n), down: make([][][]byte, n),
		offline: make([]bool, n), gen: make([]int, n)}
	for i := range n {
		srv.connect(i, false)
	}
	return w
}

// edit makes k changes on peer p and sends what it now has to send.
func (w *world) edit(p int, r *rand.Rand, k int) {
	w.peers[p].edit(r, k)
	w.edits = append(w.edits, w.peers[p].heads())
	w.peerGenerate(p)
}

// orphaned reports whether a peer lost changes the server never got.
func (w *world) orphaned() bool {
	return slices.ContainsFunc(w.lost, func(h Hash) bool { return !w.srv.has(h) })
}

func (w *world) serverGenerate(p int) {
	if w.offline[p] {
		return
	}
	if m, ok := w.srv.generate(p); ok {
		w.bytes += len(m)
		w.msgs++
		w.sent = append(w.sent, m)
		w.sentTo = append(w.sentTo, p)
		if w.trace != nil {
			w.trace("E%d server → peer %d: %s", len(w.sent)-1, p, describe(m))
		}
		w.down[p] = append(w.down[p], m)
	}
}

func (w *world) peerGenerate(p int) {
	if w.offline[p] {
		return
	}
	if m, ok := w.peers[p].generate(); ok {
		w.up[p] = append(w.up[p], m)
	}
}

// take removes a message from q: the first, or (reorder) another, or
// (duplicate) the first, leaving it to be delivered again.
func take(q *[][]byte, how int, x uint64) []byte {
	s := *q
	switch {
	case how < 0: // never: see world.disorder
	case how < 5: // duplicate
		return s[0]
	case how < 12: // reorder
		i := int(x % uint64(len(s)))
		m := s[i]
		*q = slices.Delete(s, i, i+1)
		return m
	}
	m := s[0]
	*q = s[1:]
	return m
}

func (w *world) toServer(p, how int, x uint64) error {
	if len(w.up[p]) == 0 {
		return nil
	}
	m := take(&w.up[p], w.order(how), x)
	if w.trace != nil {
		w.trace("peer %d → server: %s", p, describe(m))
	}
	changed, err := w.srv.receive(p, m)
	if err != nil {
		return fmt.Errorf("server refused a message from peer %d: %w", p, err)
	}
	// A room's turn: the sender gets a reply; if the heads moved,
	// everyone may need a message.
	w.serverGenerate(p)
	if changed {
		for q := range w.peers {
			if q != p {
				w.serverGenerate(q)
			}
		}
	}
	return nil
}

func (w *world) toPeer(p, how int, x uint64) error {
	if len(w.down[p]) == 0 {
		return nil
	}
	m := take(&w.down[p], w.order(how), x)
	if err := w.peers[p].receive(m); err != nil {
		return fmt.Errorf("peer %d refused a server message %x: %w", p, m, err)
	}
	w.peerGenerate(p)
	return nil
}

// order is how a delivery takes its message: in order only, if the world
// says so.
func (w *world) order(how int) int {
	if w.inOrder {
		return 100
	}
	return how
}

// reconnect starts a new session for p: both sides resume from their
// saved states, or start fresh; lost means the peer lost its data (a new
// empty document under a new actor).
func (w *world) reconnect(p int, resume, lost bool) {
	if w.trace != nil {
		w.trace("reconnect %d resume=%v lost=%v", p, resume, lost)
	}
	w.up[p], w.down[p] = nil, nil
	w.offline[p] = false
	if lost {
		w.gen[p]++
		w.lost = append(w.lost, w.peers[p].heads()...)
		w.peers[p] = w.peers[p].lose(w.gen[p])
	} else {
		w.peers[p].restart(resume)
	}
	w.srv.connect(p, resume || lost)
	w.peerGenerate(p)
}

// step does one random thing. It draws the same random numbers whatever
// the world's state, so two worlds stay on the same schedule.
func (w *world) step(r *rand.Rand) error {
	a, p, how, x := r.IntN(100), r.IntN(len(w.peers)), r.IntN(100), r.Uint64()
	w.last = [2]int{a, p}
	edit := rand.New(rand.NewPCG(x, 7))
	switch {
	case a < 20:
		w.edit(p, edit, 1+how%3)
	case a < 45:
		if !w.offline[p] {
			return w.toServer(p, how, x)
		}
	case a < 75:
		if !w.offline[p] {
			return w.toPeer(p, how, x)
		}
	case a < 85:
		w.serverGenerate(p)
		w.peerGenerate(p)
	case a < 93:
		if w.offline[p] {
			w.reconnect(p, how < 50, false)
		} else { // falls behind until it reconnects
			w.offline[p] = true
			w.up[p], w.down[p] = nil, nil
		}
	default:
		w.reconnect(p, how < 40, how >= 90)
	}
	return nil
}

// quiesce brings every peer online and delivers everything in order until
// nobody has anything to send.
func (w *world) quiesce() error {
	for p := range w.peers {
		if w.offline[p] {
			w.reconnect(p, true, false)
		}
	}
	for range 1000 {
		busy := false
		for p := range w.peers {
			for len(w.up[p]) > 0 {
				busy = true
				if err := w.toServer(p, 100, 0); err != nil {
					return err
				}
			}
			for len(w.down[p]) > 0 {
				busy = true
				if err := w.toPeer(p, 100, 0); err != nil {
					return err
				}
			}
		}
		if !busy {
			return nil
		}
	}
	return fmt.Errorf("no quiescence")
}

func (w *world) converged() error {
	want := w.srv.heads()
	for p, peer := range w.peers {
		if got := peer.heads(); !slices.Equal(got, want) {
			return fmt.Errorf("peer %d has %d heads %x…, the server %d heads", p, len(got), got, len(want))
		}
	}
	return nil
}

// runSession runs one session on srv and reports its world.
func runSession(t testing.TB, seed uint64, srv server, inOrder bool) (*world, error) {
	r := rand.New(rand.NewPCG(seed, 42))
	peers := 2 + r.IntN(2)
	steps := 40 + r.IntN(120)
	w := newWorld(t, srv, peers)
	w.inOrder = inOrder
	for p := range peers {
		w.peerGenerate(p)
	}
	for range steps {
		if err := w.step(r); err != nil {
			return w, err
		}
	}
	if err := w.quiesce(); err != nil {
		return w, err
	}
	return w, w.converged()
}

// sessionFunc runs one session on srv (runSession; jsDiffSession for JS
// peers). runDifferential runs a seed on the engine before the core.
type sessionFunc func(t testing.TB, seed uint64, srv server, inOrder bool) (*world, error)

// diffStats sums a run of sessions, in three classes: sessions in which
// the engine sent a whole document (a V2 message: it does what the 0.5.0
// core cannot, so its bytes are not held to the core's), "plain" sessions
// (deliveries in order, and the engine never held a change) and the
// others, where the engine's two departures from the 0.5.0 core can fire
// (see Generate): asking only the peer whose heads lead to a held change
// (and sending the others a have), and not letting the in-flight flag hold
// back a message the peer needs.
type diffStats struct {
	sessions, identical, notConverged int
	engineBytes, coreBytes            int
	engineMsgs, coreMsgs              int
	plain, plainMore                  int // plain sessions; of those, where the engine sent more
	other, otherMore                  int
	otherEngine, otherCore            int // bytes in the other sessions
	whole, wholeMore                  int // whole-document sessions
	wholeEngine, wholeCore            int
	sameChanges                       int // sessions whose two runs made the same changes and lost none
	maxRatio                          float64
	maxRatioSeed                      uint64
}

func runDifferential(t *testing.T, first uint64, n int, run sessionFunc) diffStats {
	var st diffStats
	for seed := first; seed < first+uint64(n); seed++ {
		inOrder := seed%2 == 0
		eng := &engineServer{doc: NewDocument(Options{}), states: make([]*SyncState, 4)}
		ew, err := run(t, seed, eng, inOrder)
		if err != nil {
			t.Fatalf("seed %d, engine server: %v", seed, err)
		}
		// What the engine still holds must be orphans: changes of a peer
		// that lost its data before it sent their deps.
		held := slices.Collect(maps.Keys(eng.doc.held.m))
		for p, peer := range ew.peers {
			if len(held) == 0 {
				break
			}
			for i, ok := range peer.has(held) {
				if ok {
					t.Fatalf("seed %d: the engine holds %x, which peer %d has", seed, held[i][:4], p)
				}
			}
		}
		core := &coreServer{doc: automerge.New(), states: make([]*automerge.SyncState, 4)}
		cw, err := run(t, seed, core, inOrder)
		if err != nil {
			// The core is the reference; a session it cannot finish is
			// counted, not failed.
			st.notConverged++
			t.Logf("seed %d, automerge-go server: %v", seed, err)
			continue
		}
		st.sessions++
		st.engineBytes += ew.bytes
		st.coreBytes += cw.bytes
		st.engineMsgs += ew.msgs
		st.coreMsgs += cw.msgs
		if slices.EqualFunc(ew.sent, cw.sent, bytes.Equal) {
			st.identical++
		}
		// Both runs made the same changes, and none was lost with a
		// peer's data: the server has all of them in both.
		if slices.EqualFunc(ew.edits, cw.edits, slices.Equal) && !ew.orphaned() && !cw.orphaned() {
			st.sameChanges++
			if eh, ch := eng.heads(), core.heads(); !slices.Equal(eh, ch) {
				t.Errorf("seed %d: the same changes made, but the engine ends at heads %x, the core at %x", seed, eh, ch)
			}
		}
		more := ew.bytes > cw.bytes
		switch {
		case slices.ContainsFunc(ew.sent, func(m []byte) bool { return m[0] == MessageV2 }):
			st.whole++
			st.wholeEngine += ew.bytes
			st.wholeCore += cw.bytes
			if more {
				st.wholeMore++
			}
		case inOrder && eng.held == 0:
			st.plain++
			if more {
				st.plainMore++
				t.Errorf("seed %d (in order, nothing held): the engine sent %d bytes, the core %d", seed, ew.bytes, cw.bytes)
			}
		default:
			st.other++
			st.otherEngine += ew.bytes
			st.otherCore += cw.bytes
			if more {
				st.otherMore++
			}
		}
		if ratio := float64(ew.bytes) / float64(max(cw.bytes, 1)); ratio > st.maxRatio {
			st.maxRatio, st.maxRatioSeed = ratio, seed
		}
	}
	return st
}

// report logs the sums, and fails the test if the engine sent more bytes
// than the core outside whole-document sessions.
func (st diffStats) report(t *testing.T) {
	t.Logf("server messages byte-identical to the core's in %d of %d sessions; the same changes made (and none lost) in %d, with the same heads",
		st.identical, st.sessions, st.sameChanges)
	t.Logf("bytes sent: engine %d, core %d, ratio %.4f; messages %d vs %d",
		st.engineBytes, st.coreBytes, float64(st.engineBytes)/float64(st.coreBytes), st.engineMsgs, st.coreMsgs)
	t.Logf("engine sent more: %d of %d plain sessions, %d of %d others (bytes ratio in those %.4f; max ratio %.3f, seed %d)",
		st.plainMore, st.plain, st.otherMore, st.other, float64(st.otherEngine)/float64(max(st.otherCore, 1)), st.maxRatio, st.maxRatioSeed)
	if st.whole > 0 {
		t.Logf("whole-document sessions: %d, bytes engine %d, core %d (ratio %.4f); the engine sent more in %d",
			st.whole, st.wholeEngine, st.wholeCore, float64(st.wholeEngine)/float64(max(st.wholeCore, 1)), st.wholeMore)
	}
	if st.engineBytes-st.wholeEngine > st.coreBytes-st.wholeCore {
		t.Errorf("the engine sent more bytes than the core in all (whole-document sessions aside)")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestDifferential(t *testing.T) {
	n := envInt("ENGINE_DIFF_SESSIONS", 400)
	if testing.Short() {
		n = 60
	}
	first := uint64(envInt("ENGINE_DIFF_SEED", 1))
	start := time.Now()
	st := runDifferential(t, first, n, runSession)
	t.Logf("%d sessions in %v (seeds %d–%d, odd seeds with duplicates and reorders): all converged with the engine; the core failed to converge in %d",
		n, time.Since(start).Round(time.Millisecond), first, first+uint64(n)-1, st.notConverged)
	st.report(t)
}

// describe summarizes a sync message for traces.
func describe(b []byte) string {
	if len(b) > 0 && b[0] == MessageV2 {
		return fmt.Sprintf("a whole document, %d bytes", len(b))
	}
	m, err := DecodeMessage(b)
	if err != nil {
		return "bad " + err.Error()
	}
	s := fmt.Sprintf("heads=%d[", len(m.Heads))
	for _, h := range m.Heads {
		s += fmt.Sprintf("%x ", h[:2])
	}
	s += fmt.Sprintf("] need=%d have=", len(m.Need))
	for _, h := range m.Have {
		s += fmt.Sprintf("{ls=%d bloom=%d}", len(h.LastSync), h.Bloom.Len())
	}
	s += fmt.Sprintf(" changes=%d", len(m.Changes))
	for _, c := range m.Changes {
		s += fmt.Sprintf(" %x", c.Hash[:2])
	}
	return s
}

// TestDifferentialTrace prints one session's messages, for debugging:
// ENGINE_DIFF_TRACE=SEED go test -run TestDifferentialTrace -v ./sync/engine/
// (with ENGINE_DIFF_CORE=1 for the automerge-go server; odd seeds have
// duplicates and reorders, as in TestDifferential).
func TestDifferentialTrace(t *testing.T) {
	seed, _ := strconv.Atoi(os.Getenv("ENGINE_DIFF_TRACE"))
	if seed == 0 {
		t.Skip()
	}
	var srv server = &engineServer{doc: NewDocument(Options{}), states: make([]*SyncState, 4)}
	if os.Getenv("ENGINE_DIFF_CORE") != "" {
		srv = &coreServer{doc: automerge.New(), states: make([]*automerge.SyncState, 4)}
	}
	r := rand.New(rand.NewPCG(uint64(seed), 42))
	peers := 2 + r.IntN(2)
	steps := 40 + r.IntN(120)
	w := newWorld(t, srv, peers)
	w.inOrder = seed%2 == 0
	w.trace = t.Logf
	for p := range peers {
		w.peerGenerate(p)
	}
	for range steps {
		if err := w.step(r); err != nil {
			t.Fatal(err)
		}
	}
	t.Log("quiesce")
	if err := w.quiesce(); err != nil {
		t.Fatal(err)
	}
	t.Log(w.converged())
}
