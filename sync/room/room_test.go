package room_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
	"go.uber.org/goleak"

	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testPeer is an in-memory room.Peer: what the room sends lands in a
// channel that the test reads, like a connection's outbound queue.
type testPeer struct {
	id      wire.PeerID
	storage string
	out     chan wire.Message
	failed  chan wire.CloseCode
}

func newTestPeer(id string) *testPeer {
	return &testPeer{id: wire.PeerID(id), out: make(chan wire.Message, 1024), failed: make(chan wire.CloseCode, 1)}
}

func (p *testPeer) ID() wire.PeerID   { return p.id }
func (p *testPeer) StorageID() string { return p.storage }
func (p *testPeer) Send(m wire.Message) {
	select {
	case p.out <- m:
	default:
		panic("test peer queue full")
	}
}
func (p *testPeer) Fail(code wire.CloseCode, _ string) {
	select {
	case p.failed <- code:
	default:
	}
}

// client is an automerge-repo peer made of automerge-go: a document, its
// sync state with the server, and a testPeer as its connection.
type client struct {
	t    *testing.T
	doc  *automerge.Doc
	ss   *automerge.SyncState
	peer *testPeer
	reg  *room.Registry
	id   wire.DocID
}

func newClient(t *testing.T, reg *room.Registry, id wire.DocID, name string) *client {
	doc := automerge.New()
	return &client{t: t, doc: doc, ss: automerge.NewSyncState(doc), peer: newTestPeer(name), reg: reg, id: id}
}

// send generates the client's next sync message and delivers it as typ.
func (c *client) send(typ string) bool {
	c.t.Helper()
	sm, ok := c.ss.GenerateMessage()
	if !ok {
		return false
	}
	msg := wire.Message{Type: typ, SenderID: c.peer.id, DocumentID: c.id, Data: sm.Bytes()}
	if err := c.reg.Sync(context.Background(), c.peer, msg, false); err != nil {
		c.t.Fatalf("deliver: %v", err)
	}
	return true
}

// next waits for the room's next message to this client.
func (c *client) next(timeout time.Duration) (wire.Message, bool) {
	select {
	case m := <-c.peer.out:
		return m, true
	case <-time.After(timeout):
		return wire.Message{}, false
	}
}

// syncUntil exchanges messages with the room until cond holds.
func (c *client) syncUntil(cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	c.send(wire.TypeSync)
	received := 0
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: condition not reached after %d messages from the room", c.peer.id, received)
		}
		select {
		case code := <-c.peer.failed:
			c.t.Fatalf("%s: the room closed the peer with %d", c.peer.id, code)
		default:
		}
		m, ok := c.next(50 * time.Millisecond)
		if !ok {
			c.send(wire.TypeSync)
			continue
		}
		received++
		if m.Type != wire.TypeSync {
			continue
		}
		if _, err := c.ss.ReceiveMessage(m.Data); err != nil {
			c.t.Fatalf("receive: %v", err)
		}
		c.send(wire.TypeSync)
	}
}

// sendInOneTurn delivers the messages while the room is busy with an
// operation, so that they reach it in one turn.
func (c *client) sendInOneTurn(msgs ...*automerge.SyncMessage) {
	c.t.Helper()
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	go func() {
		_ = c.reg.Do(ctx, c.id, func(*core.Doc, bool) error { close(entered); <-release; return nil })
	}()
	<-entered
	for _, sm := range msgs {
		if err := c.reg.Sync(ctx, c.peer, wire.Message{Type: wire.TypeSync, SenderID: c.peer.id, DocumentID: c.id, Data: sm.Bytes()}, false); err != nil {
			c.t.Fatal(err)
		}
	}
	close(release)
}

// untilAdvertised syncs until the room's heads include h.
func (c *client) untilAdvertised(h automerge.ChangeHash, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: the room never advertised change %s", c.peer.id, h)
		}
		sm, err := c.ss.ReceiveMessage(m.Data)
		if err != nil {
			c.t.Fatal(err)
		}
		if slices.Contains(sm.Heads(), h) {
			return
		}
		c.send(wire.TypeSync)
	}
}

func (c *client) set(key string, v any) {
	c.t.Helper()
	if err := c.doc.RootMap().Set(key, v); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.doc.Commit("set " + key); err != nil {
		c.t.Fatal(err)
	}
}

func sameHeads(a, b *automerge.Doc) bool {
	ha, hb := a.Heads(), b.Heads()
	slices.SortFunc(ha, func(x, y automerge.ChangeHash) int { return slices.Compare(x[:], y[:]) })
	slices.SortFunc(hb, func(x, y automerge.ChangeHash) int { return slices.Compare(x[:], y[:]) })
	return slices.Equal(ha, hb)
}

// faultyStore wraps a real store with switches that make calls fail or wait.
type faultyStore struct {
	room.Store
	failLoads   atomic.Int32 // fail this many Loads
	failAppends atomic.Bool
	appends     atomic.Int32

	mu    sync.Mutex
	enter chan struct{} // when non-nil, Append signals entry
	gate  chan struct{} // when non-nil, Append waits for it to close
}

// hold makes every Append signal enter and then wait until gate is closed.
func (s *faultyStore) hold(enter, gate chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enter, s.gate = enter, gate
}

var errInjected = errors.New("injected failure")

func (s *faultyStore) Load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	if s.failLoads.Add(-1) >= 0 {
		return room.StoredDoc{}, errInjected
	}
	return s.Store.Load(ctx, id)
}

func (s *faultyStore) Append(ctx context.Context, id wire.DocID, chs []core.Change) (int64, error) {
	s.mu.Lock()
	enter, gate := s.enter, s.gate
	s.mu.Unlock()
	if enter != nil {
		select {
		case enter <- struct{}{}:
		default:
		}
	}
	if gate != nil {
		<-gate
	}
	if s.failAppends.Load() {
		return 0, errInjected
	}
	seq, err := s.Store.Append(ctx, id, chs)
	if err == nil {
		s.appends.Add(1) // counted once durable, so tests that wait for it can read it back
	}
	return seq, err
}

func newStore(t *testing.T) *faultyStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &faultyStore{Store: st}
}

func newRegistry(t *testing.T, st room.Store, cfg room.Config) *room.Registry {
	t.Helper()
	reg := room.NewRegistry(st, cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Close(ctx); err != nil {
			t.Errorf("close registry: %v", err)
		}
	})
	return reg
}

func TestTwoPeersSyncThroughRoom(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()

	a := newClient(t, reg, id, "peer-a")
	a.set("hello", "world")
	b := newClient(t, reg, id, "peer-b")

	a.syncUntil(func() bool { return st.appends.Load() > 0 })
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
	if v, err := b.doc.Path("hello").Get(); err != nil || v.Str() != "world" {
		t.Fatalf("b has hello=%v (%v)", v, err)
	}

	// An edit by b reaches a without a's asking: the room fans out.
	b.set("count", int64(2))
	b.syncUntil(func() bool { return st.appends.Load() > 1 })
	a.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
}

func TestChangesDurableBeforeAdvertised(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	b := newClient(t, reg, id, "peer-b")
	a.set("v", int64(1))
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
	for len(b.peer.out) > 0 { // b is idle
		<-b.peer.out
	}

	// Hold the next append; while it is held, nothing may leave the room.
	enter, gate := make(chan struct{}, 16), make(chan struct{})
	st.hold(enter, gate)
	released := false
	release := func() {
		if !released {
			released = true
			close(gate)
		}
	}
	t.Cleanup(release)
	a.set("v", int64(2))
	heads := a.doc.Heads()
	if !a.send(wire.TypeSync) {
		t.Fatal("a has nothing to send")
	}
	<-enter
	time.Sleep(50 * time.Millisecond) // give a wrong implementation the chance to leak
	// Messages from before the change may still be queued; none may carry
	// the change's heads while it is not durable.
	for _, p := range []*testPeer{a.peer, b.peer} {
		for len(p.out) > 0 {
			m := <-p.out
			if m.Type != wire.TypeSync {
				continue
			}
			sm, err := automerge.NewSyncState(automerge.New()).ReceiveMessage(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(sm.Heads(), heads[0]) {
				t.Fatalf("%s was sent heads with the change while it was not durable", p.id)
			}
		}
	}
	release()
	m, ok := b.next(5 * time.Second)
	if !ok {
		t.Fatal("b got nothing after the append completed")
	}
	sm, err := b.ss.ReceiveMessage(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sm.Heads(), heads) {
		t.Fatalf("advertised heads %v, want %v", sm.Heads(), heads)
	}
}

func TestFailedLoadIsNotCached(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })

	// Evict by closing this registry; a new one over the same store fails
	// its first load.
	st.failLoads.Store(1)
	reg2 := newRegistry(t, st, room.Config{})
	b := newClient(t, reg2, id, "peer-b")
	b.send(wire.TypeRequest)
	select {
	case code := <-b.peer.failed:
		if code != wire.CloseTryAgainLater {
			t.Fatalf("close code %d, want %d", code, wire.CloseTryAgainLater)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("peer waiting for a failed load was not told")
	}
	// The failure was not cached as an empty document: the next attempt
	// loads the real one.
	c := newClient(t, reg2, id, "peer-c")
	c.syncUntil(func() bool { return sameHeads(a.doc, c.doc) })
}

func TestIdleRoomIsCompactedEvictedAndReloaded(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{IdleTimeout: 50 * time.Millisecond})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	for i := range 5 {
		a.set(fmt.Sprint("k", i), int64(i))
	}
	a.syncUntil(func() bool { return st.appends.Load() > 0 })
	reg.Leave(context.Background(), id, a.peer)
	testwait.For(t, testwait.Default, "the registry to empty", func() bool { return reg.Len() == 0 })
	// The compactor works off the room's turn: the snapshot follows.
	testwait.For(t, testwait.Default, "a snapshot and no logged changes", func() bool {
		stored, err := st.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Snapshot != nil && len(stored.Changes) == 0
	})
	b := newClient(t, reg, id, "peer-b")
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
	if reg.Len() != 1 {
		t.Fatalf("%d rooms in memory, want 1", reg.Len())
	}
}

func TestRequestUnavailableThenAvailable(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	b := newClient(t, reg, id, "peer-b")
	b.send(wire.TypeRequest)
	var gotUnavailable bool
	for !gotUnavailable {
		m, ok := b.next(5 * time.Second)
		if !ok {
			t.Fatal("no doc-unavailable")
		}
		gotUnavailable = m.Type == wire.TypeDocUnavailable && m.DocumentID == id
	}
	// Another peer creates the document: b, still in the room, gets it
	// without asking again.
	a := newClient(t, reg, id, "peer-a")
	a.set("late", true)
	a.syncUntil(func() bool { return st.appends.Load() > 0 })
	deadline := time.Now().Add(5 * time.Second)
	for !sameHeads(a.doc, b.doc) {
		m, ok := b.next(time.Until(deadline))
		if !ok {
			t.Fatal("b never received the document")
		}
		if m.Type == wire.TypeDocUnavailable {
			t.Fatal("doc-unavailable sent twice")
		}
		if _, err := b.ss.ReceiveMessage(m.Data); err != nil {
			t.Fatal(err)
		}
		b.send(wire.TypeSync)
	}
}

// untilUnavailable reads c's messages until doc-unavailable arrives and
// returns when it did; sync messages before it are applied.
func (c *client) untilUnavailable(timeout time.Duration) time.Time {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: no doc-unavailable within %v", c.peer.id, timeout)
		}
		if m.Type == wire.TypeDocUnavailable {
			if m.DocumentID != c.id {
				c.t.Fatalf("doc-unavailable for %s, want %s", m.DocumentID, c.id)
			}
			return time.Now()
		}
		if _, err := c.ss.ReceiveMessage(m.Data); err != nil {
			c.t.Fatal(err)
		}
	}
}

// A request for a document that exists nowhere is answered doc-unavailable
// only once the grace has passed, for each requester counted from its own
// request; a later request of a waiting peer does not extend its wait, and
// nobody is told twice.
func TestRequestUnavailableAfterGrace(t *testing.T) {
	t.Parallel()
	const grace = 400 * time.Millisecond
	reg := newRegistry(t, newStore(t), room.Config{UnavailableGrace: grace})
	id := wire.NewDocID()
	b1, b2 := newClient(t, reg, id, "peer-b1"), newClient(t, reg, id, "peer-b2")

	sent1 := time.Now()
	b1.send(wire.TypeRequest)
	// b2 asks while b1 waits: its grace ends after b1's.
	time.Sleep(grace / 2)
	sent2 := time.Now()
	b2.send(wire.TypeRequest)
	got1 := b1.untilUnavailable(10 * time.Second)
	got2 := b2.untilUnavailable(10 * time.Second)
	if d := got1.Sub(sent1); d < grace {
		t.Fatalf("b1 told doc-unavailable %v after its request, before the %v grace", d, grace)
	}
	if d := got2.Sub(sent2); d < grace {
		t.Fatalf("b2 told doc-unavailable %v after its request, before the %v grace", d, grace)
	}
	// Asking again gets the sync reply, if any, and no second answer.
	b1.ss = automerge.NewSyncState(b1.doc)
	b1.send(wire.TypeRequest)
	b2.send(wire.TypeSync)
	for _, c := range []*client{b1, b2} {
		for {
			m, ok := c.next(2 * grace)
			if !ok {
				break
			}
			if m.Type == wire.TypeDocUnavailable {
				t.Fatalf("%s told doc-unavailable twice", c.peer.id)
			}
		}
	}
}

// The create-then-share race: a peer requests a document another peer has
// just created but not uploaded yet. The upload arrives within the grace,
// and the requester is sent the document, never doc-unavailable.
func TestDocumentArrivingWithinGraceIsSent(t *testing.T) {
	t.Parallel()
	const grace = 2 * time.Second
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{UnavailableGrace: grace})
	id := wire.NewDocID()
	b := newClient(t, reg, id, "peer-b")
	sent := time.Now()
	b.send(wire.TypeRequest)

	a := newClient(t, reg, id, "peer-a")
	a.set("created", "just now")
	a.syncUntil(func() bool { return st.appends.Load() > 0 })
	if stored := time.Since(sent); stored >= grace {
		// The room's deadline is at least grace after sent; only an upload
		// stored before it must win. A machine this slow proves nothing.
		t.Skipf("the upload took %v, longer than the grace", stored)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !sameHeads(a.doc, b.doc) {
		m, ok := b.next(time.Until(deadline))
		if !ok {
			t.Fatal("b never received the document")
		}
		if m.Type == wire.TypeDocUnavailable {
			t.Fatalf("b told doc-unavailable %v after its request although the document arrived within the grace", time.Since(sent))
		}
		if _, err := b.ss.ReceiveMessage(m.Data); err != nil {
			t.Fatal(err)
		}
		b.send(wire.TypeSync)
	}
	// And the grace's end tells it nothing either.
	for time.Since(sent) < grace+grace/2 {
		if m, ok := b.next(grace / 4); ok && m.Type == wire.TypeDocUnavailable {
			t.Fatal("b told doc-unavailable after it received the document")
		}
	}
	v, err := b.doc.RootMap().Get("created")
	if err != nil || v.Str() != "just now" {
		t.Fatalf("b's copy has created = %v (%v)", v, err)
	}
}

// With a negative grace a missing document's request is answered at once,
// in the turn that handled it: by the time a later operation in the room
// has run, the requester has been told.
func TestRequestUnavailableAtOnceWithoutGrace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		grace time.Duration
		told  bool
	}{{-1, true}, {time.Hour, false}} {
		reg := newRegistry(t, newStore(t), room.Config{UnavailableGrace: tc.grace})
		id := wire.NewDocID()
		b := newClient(t, reg, id, "peer-b")
		b.send(wire.TypeRequest)
		// Two operations in turn: the second runs in a turn after the one
		// that took the request, so that turn's messages have been sent.
		for range 2 {
			if err := reg.Do(context.Background(), id, func(*core.Doc, bool) error { return nil }); err != nil {
				t.Fatal(err)
			}
		}
		told := false
		for len(b.peer.out) > 0 {
			told = told || (<-b.peer.out).Type == wire.TypeDocUnavailable
		}
		if told != tc.told {
			t.Fatalf("grace %v: told doc-unavailable right after the request's turn: %v, want %v", tc.grace, told, tc.told)
		}
	}
}

// flagsPeer is a client whose core writes a flags trailer, as
// @automerge/automerge 3.2.6+ does ("02 02 84": it supports sync resets),
// syncing as a reader or a writer.
type flagsPeer struct {
	*client
	flags    bool
	readOnly bool
}

var jsFlags = []byte{0x02, 0x02, 0x84}

// sendRaw delivers data as the peer's sync message.
func (c *flagsPeer) sendRaw(typ string, data []byte) {
	c.t.Helper()
	msg := wire.Message{Type: typ, SenderID: c.peer.id, DocumentID: c.id, Data: data}
	if err := c.reg.Sync(context.Background(), c.peer, msg, c.readOnly); err != nil {
		c.t.Fatal(err)
	}
}

// message is the client's next sync message, with its trailer.
func (c *flagsPeer) message() ([]byte, bool) {
	sm, ok := c.ss.GenerateMessage()
	if !ok {
		return nil, false
	}
	b := sm.Bytes()
	if c.flags {
		b = append(b, jsFlags...)
	}
	return b, true
}

// syncWith exchanges messages until the client has want's heads, and
// returns the trailers of the room's sync messages.
func (c *flagsPeer) syncWith(want *automerge.Doc, typ string) []core.Trailer {
	c.t.Helper()
	var trailers []core.Trailer
	if b, ok := c.message(); ok {
		c.sendRaw(typ, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !sameHeads(c.doc, want) {
		m, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: never got the document", c.peer.id)
		}
		if m.Type != wire.TypeSync {
			continue
		}
		tr, err := core.ReadTrailer(m.Data)
		if err != nil {
			c.t.Fatal(err)
		}
		trailers = append(trailers, tr)
		if _, err := c.ss.ReceiveMessage(m.Data); err != nil {
			c.t.Fatalf("a 0.5 core reading the room's message: %v", err)
		}
		if b, ok := c.message(); ok {
			c.sendRaw(wire.TypeSync, b)
		}
	}
	return trailers
}

// A read-only peer whose core understands flags is told it is read-only
// in every message (so that it stops sending changes); the V2 messages it
// sends then are taken, their changes dropped. Peers that do not speak
// flags, and writers, get no trailer, and V2 from them is still refused.
func TestReadOnlyPeerToldThroughFlags(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-writer")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })

	told := core.Trailer{Present: true, HasFlags: true, Flags: core.FlagReadOnly}
	reader := &flagsPeer{client: newClient(t, reg, id, "peer-reader-flags"), flags: true, readOnly: true}
	for i, tr := range reader.syncWith(a.doc, wire.TypeRequest) {
		if tr != told {
			t.Fatalf("message %d to the flags reader has trailer %+v, want %+v", i, tr, told)
		}
	}
	plain := &flagsPeer{client: newClient(t, reg, id, "peer-reader-plain"), readOnly: true}
	writer := &flagsPeer{client: newClient(t, reg, id, "peer-writer-flags"), flags: true}
	for _, c := range []*flagsPeer{plain, writer} {
		for i, tr := range c.syncWith(a.doc, wire.TypeRequest) {
			if tr.Present {
				t.Fatalf("message %d to %s has trailer %+v", i, c.peer.id, tr)
			}
		}
	}

	// A told reader, as a 3.x core, now sends V2: accepted, and a change
	// in it is dropped like any read-only change (and warned about once).
	reader.set("mine", "local only")
	b, ok := reader.message()
	if !ok {
		t.Fatal("the reader has nothing to send after an edit")
	}
	v2 := append([]byte{0x43}, b[1:]...)
	reader.sendRaw(wire.TypeSync, v2)
	for _, c := range []*flagsPeer{plain, writer} {
		// A V2 message from a peer that was never told anything breaks the
		// protocol: it is refused.
		b, ok := c.message()
		if !ok {
			sm := automerge.NewSyncState(c.doc)
			m, _ := sm.GenerateMessage()
			b = m.Bytes()
		}
		c.sendRaw(wire.TypeSync, append([]byte{0x43}, b[1:]...))
	}
	for _, c := range []*flagsPeer{plain, writer} {
		select {
		case code := <-c.peer.failed:
			if code != wire.CloseInvalidData {
				t.Fatalf("%s closed with %d, want 1007", c.peer.id, code)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s's V2 message was accepted", c.peer.id)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for warned := false; !warned; {
		select {
		case code := <-reader.peer.failed:
			t.Fatalf("the told reader was closed with %d", code)
		default:
		}
		m, ok := reader.next(time.Until(deadline))
		if !ok {
			t.Fatal("the told reader's change was not reported dropped")
		}
		warned = m.Type == wire.TypeError && strings.Contains(m.ErrorMessage, "read-only")
	}
	if n := st.appends.Load(); n != 1 {
		t.Fatalf("%d appends, want only the writer's", n)
	}
	err := reg.Do(context.Background(), id, func(doc *core.Doc, _ bool) error {
		v, err := doc.Automerge().RootMap().Get("mine")
		if err != nil {
			return err
		}
		if v.Kind() != automerge.KindVoid {
			t.Error("the reader's change reached the document")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCompactionPastThreshold(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{CompactChanges: 5})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	for i := range 12 {
		a.set(fmt.Sprint("k", i), int64(i))
		a.syncUntil(func() bool { return st.appends.Load() == int32(i+1) })
	}
	// Compaction runs off the room's turn, so the log may be longer for a
	// moment; it then holds fewer than CompactChanges.
	testwait.For(t, testwait.Default, "a snapshot and fewer than 5 logged changes", func() bool {
		stored, err := st.Load(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return stored.Snapshot != nil && len(stored.Changes) < 5
	})
	// What is stored loads as the whole document.
	reg2 := newRegistry(t, st, room.Config{})
	b := newClient(t, reg2, id, "peer-b")
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
}

func TestBadSyncDataFailsOnlyThatPeer(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	bad := newTestPeer("peer-bad")
	for _, data := range [][]byte{{0x42, 0xff, 0xff, 0x01}, []byte("garbage"), {}} {
		if err := reg.Sync(context.Background(), bad, wire.Message{Type: wire.TypeSync, SenderID: bad.id, DocumentID: id, Data: data}, false); err != nil {
			t.Fatal(err)
		}
		select {
		case code := <-bad.failed:
			if code != wire.CloseInvalidData {
				t.Fatalf("close code %d, want %d", code, wire.CloseInvalidData)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("bad data %x was not refused", data)
		}
	}
	// The room carries on for everyone else.
	a.set("k2", "v2")
	a.syncUntil(func() bool { return st.appends.Load() == 2 })
	b := newClient(t, reg, id, "peer-b")
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
}

func TestStoreFailureHoldsChangesUntilDurable(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{RetryBackoff: 10 * time.Millisecond})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	b := newClient(t, reg, id, "peer-b")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
	for len(b.peer.out) > 0 {
		<-b.peer.out
	}

	st.failAppends.Store(true)
	a.set("k", "during outage")
	a.send(wire.TypeSync)
	if m, ok := b.next(300 * time.Millisecond); ok {
		t.Fatalf("b was sent %s while the change could not be stored", m.Type)
	}
	st.failAppends.Store(false)
	testwait.For(t, testwait.Default, "two appends", func() bool { return st.appends.Load() == 2 })
	b.syncUntil(func() bool { return sameHeads(a.doc, b.doc) })
}

func TestOutageStopsReadingPastTheBound(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{MaxPendingBytes: 1, InboxSize: 1, RetryBackoff: 5 * time.Millisecond})
	id := wire.NewDocID()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	if !reg.StoreHealthy() {
		t.Fatal("store reported unhealthy before any failure")
	}

	st.failAppends.Store(true)
	a.set("k", "held")
	a.send(wire.TypeSync)
	testwait.For(t, testwait.Default, "the store to be unhealthy", func() bool { return !reg.StoreHealthy() })

	// The room holds more than its bound: it stops taking messages, so a
	// sender blocks (its connection would stop being read) instead of any
	// message being dropped.
	b := newTestPeer("peer-b")
	first, _ := automerge.NewSyncState(automerge.New()).GenerateMessage()
	req := wire.Message{Type: wire.TypeRequest, SenderID: b.id, DocumentID: id, Data: first.Bytes()}
	blocked := false
	for range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		err := reg.Sync(ctx, b, req, false)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			blocked = true
			break
		}
	}
	if !blocked {
		t.Fatal("the room kept taking messages past its pending bound")
	}
	if len(b.out) != 0 {
		t.Fatal("b was answered while the store was down")
	}

	st.failAppends.Store(false)
	testwait.For(t, testwait.Default, "two appends and a healthy store", func() bool { return st.appends.Load() == 2 && reg.StoreHealthy() })
	if err := reg.Sync(context.Background(), b, req, false); err != nil {
		t.Fatal(err)
	}
	m, ok := (&client{peer: b}).next(5 * time.Second)
	if !ok || m.Type != wire.TypeSync {
		t.Fatalf("b not answered after recovery: %+v", m)
	}
}

func TestDoEditsDurablyAndBroadcasts(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	ctx := context.Background()

	err := reg.Do(ctx, id, func(doc *core.Doc, exists bool) error {
		if exists {
			t.Error("a new document reported as existing")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := newClient(t, reg, id, "peer-b")
	b.send(wire.TypeRequest) // b waits in the room for the document

	var want automerge.ChangeHash
	err = reg.Do(ctx, id, func(doc *core.Doc, _ bool) error {
		if err := doc.Automerge().RootMap().Set("from", "server"); err != nil {
			return err
		}
		h, err := doc.Automerge().Commit("server edit")
		want = h
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Durable when Do returns.
	stored, err := st.Load(ctx, id)
	if err != nil || len(stored.Changes) != 1 {
		t.Fatalf("after Do: %d changes stored, %v", len(stored.Changes), err)
	}
	// And broadcast to the peer in the room.
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(b.doc.Heads(), want) {
		m, ok := b.next(time.Until(deadline))
		if !ok {
			t.Fatal("the server-side edit never reached the peer")
		}
		if m.Type != wire.TypeSync {
			continue
		}
		if _, err := b.ss.ReceiveMessage(m.Data); err != nil {
			t.Fatal(err)
		}
		b.send(wire.TypeSync)
	}

	// A failing operation stores nothing.
	errBoom := errors.New("boom")
	if err := reg.Do(ctx, id, func(*core.Doc, bool) error { return errBoom }); !errors.Is(err, errBoom) {
		t.Fatalf("Do returned %v, want the operation's error", err)
	}
	if st.appends.Load() != 1 {
		t.Fatalf("%d appends, want 1", st.appends.Load())
	}
}

func TestDeleteTellsPeersAndForgets(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	ctx := context.Background()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", "v")
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	for len(a.peer.out) > 0 {
		<-a.peer.out
	}

	if err := reg.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	for {
		m, ok := a.next(5 * time.Second)
		if !ok {
			t.Fatal("the peer was not told that the document is gone")
		}
		if m.Type == wire.TypeDocUnavailable {
			break
		}
		// Sync messages the room sent before the delete may still be queued.
	}
	if _, err := st.Load(ctx, id); !errors.Is(err, room.ErrNotFound) {
		t.Fatalf("store after delete: %v, want ErrNotFound", err)
	}
	err := reg.Do(ctx, id, func(doc *core.Doc, exists bool) error {
		if exists || !doc.Empty() {
			t.Error("deleted document still exists in memory")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Peers(id); len(got) != 0 {
		t.Fatalf("%d peers still in the deleted document's room", len(got))
	}
}

// A peer's change must be advertised back to it even when the room takes
// that change and the peer's next, change-less message in the same turn:
// applying the second message first would make the core count the peer as
// told (its heads equal the room's) and never tell it.
func TestChangeAdvertisedWhenPeersNextMessageSharesTheTurn(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{})
	id := wire.NewDocID()
	ctx := context.Background()
	serverEdit := func(key string) {
		t.Helper()
		err := reg.Do(ctx, id, func(d *core.Doc, _ bool) error {
			if err := d.Automerge().RootMap().Set(key, true); err != nil {
				return err
			}
			_, err := d.Automerge().Commit(key)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	serverEdit("created")
	p := newClient(t, reg, id, "peer-p")
	p.syncUntil(func() bool { return len(p.doc.Heads()) == 1 && len(p.peer.out) == 0 })
	for {
		if _, ok := p.next(200 * time.Millisecond); !ok {
			break
		}
	}

	// The peer edits (message b) while the server makes a concurrent edit;
	// the peer answers the server's edit (message c).
	p.set("peer", "edit")
	mine := p.doc.Heads()[0]
	smB, _ := p.ss.GenerateMessage()
	serverEdit("rest")
	m, ok := p.next(5 * time.Second)
	if !ok {
		t.Fatal("the server's edit was not sent")
	}
	if _, err := p.ss.ReceiveMessage(m.Data); err != nil {
		t.Fatal(err)
	}
	smC, _ := p.ss.GenerateMessage()

	// b and c reach the room in one turn.
	p.sendInOneTurn(smB, smC)
	p.untilAdvertised(mine, 5*time.Second)
}

// When the store fails in the middle of a turn, the messages after the
// failure wait in the room and are applied, in order, once it recovers.
func TestTurnStoppedByStoreFailureResumes(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	reg := newRegistry(t, st, room.Config{RetryBackoff: 10 * time.Millisecond})
	id := wire.NewDocID()
	ctx := context.Background()
	a := newClient(t, reg, id, "peer-a")
	a.set("k", int64(0))
	a.syncUntil(func() bool { return st.appends.Load() == 1 })
	for {
		if _, ok := a.next(200 * time.Millisecond); !ok {
			break
		}
	}

	// Two messages from a, each with a change, reach the room in one turn
	// while the store fails.
	var msgs []*automerge.SyncMessage
	for i := 1; i <= 2; i++ {
		a.set("k", int64(i))
		sm, ok := a.ss.GenerateMessage()
		if !ok {
			t.Fatal("a has nothing to send")
		}
		msgs = append(msgs, sm)
	}
	st.failAppends.Store(true)
	a.sendInOneTurn(msgs...)
	testwait.For(t, testwait.Default, "the store to be unhealthy", func() bool { return !reg.StoreHealthy() })
	st.failAppends.Store(false)

	// Both changes end up stored and advertised back to a.
	want := a.doc.Heads()[0]
	a.untilAdvertised(want, 10*time.Second)
	stored, err := st.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := core.Load(stored.Snapshot, stored.Changes)
	if err != nil {
		t.Fatal(err)
	}
	if h := doc.Heads(); len(h) != 1 || h[0] != core.Hash(want) {
		t.Fatalf("stored heads %x, want a's last change", h)
	}
}
