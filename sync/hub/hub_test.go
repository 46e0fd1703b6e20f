package hub_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/fxamacker/cbor/v2"
	"go.uber.org/goleak"

	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type frame struct {
	kind hub.FrameKind
	data []byte
}

// pipe is an in-memory hub.Transport: the test writes frames into in and
// reads what the hub writes from out.
type pipe struct {
	in     chan frame
	out    chan []byte
	closed chan struct{}
	once   sync.Once
	code   wire.CloseCode
	stall  chan struct{} // closed: Write blocks until Close, like a peer that stopped reading
	// reading is set while the hub is inside Read: like coder/websocket,
	// the pipe answers a ping only then. deaf makes it never answer.
	reading atomic.Bool
	deaf    atomic.Bool
}

func newPipe() *pipe {
	return &pipe{in: make(chan frame, 64), out: make(chan []byte, 4096), closed: make(chan struct{}), stall: make(chan struct{})}
}

func (p *pipe) Read(ctx context.Context) (hub.FrameKind, []byte, error) {
	p.reading.Store(true)
	defer p.reading.Store(false)
	select {
	case f := <-p.in:
		return f.kind, f.data, nil
	case <-p.closed:
		return 0, nil, hub.ErrTransportClosed
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

func (p *pipe) Write(ctx context.Context, b []byte) error {
	select {
	case <-p.stall:
		select {
		case <-p.closed:
		case <-ctx.Done():
		}
		return hub.ErrTransportClosed
	default:
	}
	select {
	case p.out <- b:
		return nil
	case <-p.closed:
		return hub.ErrTransportClosed
	}
}

func (p *pipe) Ping(ctx context.Context) error {
	for {
		if p.reading.Load() && !p.deaf.Load() {
			return nil
		}
		select {
		case <-p.closed:
			return hub.ErrTransportClosed
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

func (p *pipe) Close(code wire.CloseCode, _ string) error {
	p.once.Do(func() {
		p.code = code
		close(p.closed)
	})
	return nil
}

// testConn is one client connection to the hub.
type testConn struct {
	t    *testing.T
	p    *pipe
	id   wire.PeerID
	done chan struct{}
}

type env struct {
	t     *testing.T
	hub   *hub.Hub
	rooms *room.Registry
	wg    sync.WaitGroup
}

func newEnv(t *testing.T, cfg hub.Config) *env {
	t.Helper()
	return newEnvWith(t, cfg, room.Config{}, nil)
}

// newEnvWith is newEnv with room settings, and wrap (if not nil) around
// the store the rooms use.
func newEnvWith(t *testing.T, cfg hub.Config, rcfg room.Config, wrap func(room.Store) room.Store) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var rs room.Store = st
	if wrap != nil {
		rs = wrap(st)
	}
	rooms := room.NewRegistry(rs, rcfg)
	cfg.StorageID = "11111111-2222-4333-8444-555555555555"
	cfg.PeerID = "tandem-test"
	e := &env{t: t, hub: hub.New(rooms, cfg), rooms: rooms}
	t.Cleanup(func() {
		e.hub.Close()
		e.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rooms.Close(ctx); err != nil {
			t.Error(err)
		}
		st.Close()
	})
	return e
}

func (e *env) connect(p *pipe) *testConn {
	c := &testConn{t: e.t, p: p, done: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(c.done)
		e.hub.Serve(context.Background(), p, hub.Session{})
	}()
	return c
}

// join connects a peer and completes the handshake.
func (e *env) join(id string) *testConn {
	e.t.Helper()
	c := e.connect(newPipe())
	c.id = wire.PeerID(id)
	c.send(wire.Message{Type: wire.TypeJoin, SenderID: c.id, PeerMetadata: &wire.PeerMetadata{IsEphemeral: true}, SupportedProtocolVersions: []string{"1"}})
	m := c.expect(wire.TypePeer)
	if m.SenderID != "tandem-test" || m.TargetID != c.id || m.SelectedProtocolVersion != "1" ||
		m.PeerMetadata == nil || m.PeerMetadata.StorageID != "11111111-2222-4333-8444-555555555555" || m.PeerMetadata.IsEphemeral {
		e.t.Fatalf("peer message %+v", m)
	}
	return c
}

func (c *testConn) send(m wire.Message) {
	c.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.p.in <- frame{kind: hub.FrameBinary, data: b}
}

func (c *testConn) next(timeout time.Duration) (wire.Message, bool) {
	c.t.Helper()
	select {
	case b := <-c.p.out:
		m, err := wire.Decode(b)
		if err != nil {
			c.t.Fatalf("server sent undecodable frame: %v", err)
		}
		return m, true
	case <-time.After(timeout):
		return wire.Message{}, false
	}
}

// expect skips messages until one of type typ arrives.
func (c *testConn) expect(typ string) wire.Message {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok := c.next(time.Until(deadline))
		if !ok {
			c.t.Fatalf("%s: no %s message", c.id, typ)
		}
		if m.Type == typ {
			return m
		}
	}
}

func (c *testConn) expectClosed(code wire.CloseCode) {
	c.t.Helper()
	select {
	case <-c.p.closed:
	case <-time.After(5 * time.Second):
		c.t.Fatalf("%s: connection not closed", c.id)
	}
	if c.p.code != code {
		c.t.Fatalf("%s: close code %d, want %d", c.id, c.p.code, code)
	}
}

// open makes the peer a member of doc's room with a request from an empty
// document, as a stock client asking for a document does.
func (c *testConn) open(doc wire.DocID) {
	c.t.Helper()
	d := automerge.New()
	sm, _ := automerge.NewSyncState(d).GenerateMessage()
	c.send(wire.Message{Type: wire.TypeRequest, SenderID: c.id, DocumentID: doc, Data: sm.Bytes()})
	c.expect(wire.TypeDocUnavailable)
}

func TestHandshakeErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})

	t.Run("unsupported version", func(t *testing.T) {
		c := e.connect(newPipe())
		c.send(wire.Message{Type: wire.TypeJoin, SenderID: "peer-v2", SupportedProtocolVersions: []string{"2"}})
		if m := c.expect(wire.TypeError); m.ErrorMessage != "unsupported protocol version" {
			t.Fatalf("error %q", m.ErrorMessage)
		}
		c.expectClosed(wire.CloseProtocolError)
	})
	t.Run("messages before join are dropped", func(t *testing.T) {
		c := e.connect(newPipe())
		c.id = "peer-early"
		c.send(wire.Message{Type: wire.TypeRequest, SenderID: c.id, DocumentID: wire.NewDocID(), Data: []byte{0x42}})
		if m, ok := c.next(100 * time.Millisecond); ok {
			t.Fatalf("answered %s before join", m.Type)
		}
		c.send(wire.Message{Type: wire.TypeJoin, SenderID: c.id})
		c.expect(wire.TypePeer) // a missing version list means "1"
	})
	t.Run("malformed CBOR closes", func(t *testing.T) {
		c := e.join("peer-garbage")
		c.p.in <- frame{kind: hub.FrameBinary, data: []byte{0xb9, 0x00, 0x04, 0x64}}
		c.expect(wire.TypeError)
		c.expectClosed(wire.CloseInvalidData)
	})
	t.Run("text frame gets an error and the connection stays", func(t *testing.T) {
		c := e.join("peer-text")
		c.p.in <- frame{kind: hub.FrameText, data: []byte(`{"type":"join"}`)}
		c.expect(wire.TypeError)
		c.open(wire.NewDocID()) // still served
	})
	t.Run("invalid document ID gets an error", func(t *testing.T) {
		c := e.join("peer-badid")
		c.send(wire.Message{Type: wire.TypeRequest, SenderID: c.id, DocumentID: "not-a-doc-id!", Data: []byte{0x42}})
		c.expect(wire.TypeError)
		c.open(wire.NewDocID())
	})
	t.Run("unknown types and foreign senders are ignored", func(t *testing.T) {
		c := e.join("peer-odd")
		before := e.rooms.Len()
		unknown, err := cbor.Marshal(map[string]any{"type": "subduction-connection", "senderId": string(c.id), "data": []byte{1}})
		if err != nil {
			t.Fatal(err)
		}
		c.p.in <- frame{kind: hub.FrameBinary, data: unknown}
		c.send(wire.Message{Type: wire.TypeRequest, SenderID: "peer-someone-else", DocumentID: wire.NewDocID(), Data: []byte{0x42}})
		if m, ok := c.next(100 * time.Millisecond); ok {
			t.Fatalf("answered with %s", m.Type)
		}
		if e.rooms.Len() != before {
			t.Fatal("a message with a foreign senderId reached a room")
		}
		c.open(wire.NewDocID())
	})
}

func TestEphemeralRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	doc := wire.NewDocID()
	a, b, c := e.join("peer-a"), e.join("peer-b"), e.join("peer-c")
	a.open(doc)
	b.open(doc)
	c.open(doc)

	eph := wire.Message{Type: wire.TypeEphemeral, SenderID: a.id, DocumentID: doc, SessionID: "s1", Count: 1, Data: []byte{0xa1, 0x61, 0x78, 0x05}}
	a.send(eph)
	a.send(eph) // a duplicate is delivered once
	for _, to := range []*testConn{b, c} {
		m := to.expect(wire.TypeEphemeral)
		if m.SenderID != a.id || m.TargetID != to.id || m.SessionID != "s1" || m.Count != 1 || string(m.Data) != string(eph.Data) {
			t.Fatalf("relayed %+v", m)
		}
	}
	// b echoes it back, as stock clients do: dropped, a does not see it.
	b.send(eph)
	eph.Count = 2
	a.send(eph)
	for _, to := range []*testConn{b, c} {
		if m := to.expect(wire.TypeEphemeral); m.Count != 2 {
			t.Fatalf("%s got count %d, want 2 (a duplicate slipped through)", to.id, m.Count)
		}
	}
	if m, ok := a.next(100 * time.Millisecond); ok {
		t.Fatalf("author received %s %+v", m.Type, m)
	}
}

func TestRejoinReplacesConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	doc := wire.NewDocID()
	old := e.join("peer-same")
	old.open(doc)
	fresh := e.join("peer-same")
	old.expectClosed(wire.CloseReplaced)
	fresh.open(doc) // a fresh sync state: the request is answered again
}

// grants is a fixed table of access per document.
type grants map[wire.DocID]hub.Access

func (g grants) Access(doc wire.DocID) hub.Access { return g[doc] }

// joinAs connects a peer with a session and completes the handshake.
func (e *env) joinAs(id string, sess hub.Session) *testConn {
	e.t.Helper()
	c := &testConn{t: e.t, p: newPipe(), id: wire.PeerID(id), done: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(c.done)
		e.hub.Serve(context.Background(), c.p, sess)
	}()
	c.send(wire.Message{Type: wire.TypeJoin, SenderID: c.id})
	c.expect(wire.TypePeer)
	return c
}

// syncDoc makes a document with one change and returns a first sync
// message that carries it (after the handshake with the server's reply).
func changeMessage(t *testing.T) (*automerge.Doc, []byte) {
	t.Helper()
	d := automerge.New()
	if err := d.RootMap().Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("c"); err != nil {
		t.Fatal(err)
	}
	return d, d.Save()
}

func TestAccessNoneRevealsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	secret, other := wire.NewDocID(), wire.NewDocID()
	owner := e.join("peer-owner")
	owner.open(secret) // the document's room exists

	c := e.joinAs("peer-stranger", hub.Session{Grants: grants{other: hub.AccessWrite}, TokenID: "t1"})
	rooms := e.rooms.Len()
	d := automerge.New()
	sm, _ := automerge.NewSyncState(d).GenerateMessage()
	for _, doc := range []wire.DocID{secret, wire.NewDocID()} { // existing and missing look the same
		c.send(wire.Message{Type: wire.TypeRequest, SenderID: c.id, DocumentID: doc, Data: sm.Bytes()})
		if m := c.expect(wire.TypeDocUnavailable); m.DocumentID != doc {
			t.Fatalf("doc-unavailable for %s, want %s", m.DocumentID, doc)
		}
	}
	c.send(wire.Message{Type: wire.TypeEphemeral, SenderID: c.id, DocumentID: secret, SessionID: "s", Count: 1, Data: []byte{0xf6}})
	if m, ok := owner.next(100 * time.Millisecond); ok {
		t.Fatalf("owner received %s from a peer without access", m.Type)
	}
	if e.rooms.Len() != rooms {
		t.Fatal("a request without access reached a room")
	}
}

// quiet is how long a pump waits for the server before it takes the
// exchange as settled; generous, because a loaded machine is slow.
const quiet = 750 * time.Millisecond

// pump syncs doc with the server over c until both sides are quiet, and
// returns how many messages it sent and the error messages it received.
func pump(t *testing.T, c *testConn, doc wire.DocID, ss *automerge.SyncState) (sent int, errs []string) {
	t.Helper()
	for range 50 {
		if m, ok := ss.GenerateMessage(); ok {
			sent++
			c.send(wire.Message{Type: wire.TypeSync, SenderID: c.id, DocumentID: doc, Data: m.Bytes()})
		}
		r, ok := c.next(quiet)
		if !ok {
			return sent, errs
		}
		switch r.Type {
		case wire.TypeError:
			errs = append(errs, r.ErrorMessage)
		case wire.TypeSync:
			if _, err := ss.ReceiveMessage(r.Data); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Fatal("the exchange did not settle in 50 rounds")
	return sent, errs
}

func TestReadOnlyPeerChangesAreDropped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	doc := wire.NewDocID()
	writer := e.join("peer-writer")
	wd, _ := changeMessage(t)
	wss := automerge.NewSyncState(wd)
	pump(t, writer, doc, wss)

	reader := e.joinAs("peer-reader", hub.Session{Grants: grants{doc: hub.AccessRead}})
	rd := automerge.New()
	rss := automerge.NewSyncState(rd)
	pump(t, reader, doc, rss)
	if v, err := rd.Path("k").Get(); err != nil || v.Str() != "v" {
		t.Fatalf("the read-only peer did not receive the document: %v %v", v, err)
	}

	// The reader edits: its change is dropped, it is told once, and the
	// exchange stays short.
	var sent int
	var errs []string
	// A Bloom filter false positive (about 1 %) can make the reader hold
	// its change back, waiting to be asked, which a read-only room never
	// does; edit again (a new draw) before concluding.
	for i := 0; i < 3 && len(errs) == 0; i++ {
		if err := rd.RootMap().Set("k", fmt.Sprint("reader edit ", i)); err != nil {
			t.Fatal(err)
		}
		if _, err := rd.Commit("reader"); err != nil {
			t.Fatal(err)
		}
		sent, errs = pump(t, reader, doc, rss)
	}
	if len(errs) != 1 {
		t.Fatalf("the read-only peer got %d error messages (%q), want 1", len(errs), errs)
	}
	if sent > 4 {
		t.Fatalf("the read-only peer sent %d messages for one edit: the exchange does not settle", sent)
	}
	if m, ok := writer.next(200 * time.Millisecond); ok {
		t.Fatalf("the writer was sent %s after a read-only peer's edit", m.Type)
	}
	err := e.rooms.Do(context.Background(), doc, func(d *core.Doc, _ bool) error {
		if got := d.Heads(); len(got) != 1 || got[0] != core.Hash(wd.Heads()[0]) {
			t.Errorf("document heads %x, want the writer's only", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// The reader still receives the writer's later edits.
	if err := wd.RootMap().Set("later", true); err != nil {
		t.Fatal(err)
	}
	if _, err := wd.Commit("later"); err != nil {
		t.Fatal(err)
	}
	pump(t, writer, doc, wss)
	pump(t, reader, doc, rss)
	if v, err := rd.Path("later").Get(); err != nil || v.Kind() != automerge.KindBool {
		t.Fatalf("the read-only peer missed a later edit: %v %v", v, err)
	}
}

func TestTokenExpiryAndRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	expiring := e.joinAs("peer-expiring", hub.Session{TokenID: "jti-1", Expires: time.Now().Add(200 * time.Millisecond)})
	expiring.expectClosed(wire.CloseTokenExpired)

	doc := wire.NewDocID()
	a := e.joinAs("peer-a", hub.Session{TokenID: "jti-a"})
	b := e.joinAs("peer-b", hub.Session{TokenID: "jti-b"})
	c := e.joinAs("peer-c", hub.Session{TokenID: "jti-c"})
	if n := e.hub.Revoke("jti-a"); n != 1 {
		t.Fatalf("Revoke closed %d connections, want 1", n)
	}
	a.expectClosed(wire.CloseRevoked)

	b.open(doc)
	sessions := e.hub.DisconnectDoc(doc)
	if len(sessions) != 1 || sessions[0].TokenID != "jti-b" {
		t.Fatalf("DisconnectDoc returned %+v, want the session of jti-b", sessions)
	}
	b.expectClosed(wire.CloseRevoked)
	c.open(wire.NewDocID()) // others carry on
}
