package hub_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// stalled connects a peer that joins, asks for doc, then stops reading:
// the hub's writes to it block, so what the hub sends it piles up in its
// outbound queue.
func stalled(e *env, id string, doc wire.DocID) *testConn {
	e.t.Helper()
	p := newPipe()
	c := e.connect(p)
	c.id = wire.PeerID(id)
	c.send(wire.Message{Type: wire.TypeJoin, SenderID: c.id})
	c.expect(wire.TypePeer)
	sm, _ := automerge.NewSyncState(automerge.New()).GenerateMessage()
	c.send(wire.Message{Type: wire.TypeRequest, SenderID: c.id, DocumentID: doc, Data: sm.Bytes()})
	testwait.For(e.t, testwait.Default, id+" to be in the room", func() bool {
		for _, p := range e.rooms.Peers(doc) {
			if p.ID() == c.id {
				return true
			}
		}
		return false
	})
	close(p.stall)
	return c
}

func ephemeral(from *testConn, doc wire.DocID, count int) wire.Message {
	return wire.Message{Type: wire.TypeEphemeral, SenderID: from.id, DocumentID: doc, SessionID: "s", Count: uint64(count), Data: []byte{0xf6}}
}

// TestEphemeralFloodKeepsStalledPeer: presence relayed to a peer that does
// not read is dropped once its queue backs up; the peer is not
// disconnected for it, and others carry on.
func TestEphemeralFloodKeepsStalledPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{QueueBytes: 2048, WriteTimeout: time.Minute})
	doc := wire.NewDocID()
	slow := stalled(e, "peer-slow", doc)
	a := e.join("peer-a")
	a.open(doc)
	for i := range 150 { // within a's burst: all relayed, to slow's queue
		a.send(ephemeral(a, doc, i+1))
	}
	a.open(wire.NewDocID()) // a round trip: a's connection relayed all of them
	select {
	case <-slow.p.closed:
		t.Fatalf("the stalled peer was closed (%d) by presence traffic", slow.p.code)
	case <-time.After(100 * time.Millisecond):
	}
	b := e.join("peer-b")
	b.open(doc)
	a.send(ephemeral(a, doc, 1000))
	b.expect(wire.TypeEphemeral)
}

// TestSyncBacklogDisconnectsSlowPeer: changes that pile up past the queue's
// byte bound for a peer that does not read get it closed with 4001.
func TestSyncBacklogDisconnectsSlowPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{QueueBytes: 16 << 10, WriteTimeout: time.Minute})
	doc := wire.NewDocID()
	writer := e.join("peer-writer")
	wd := automerge.New()
	wss := automerge.NewSyncState(wd)
	edit(t, wd, "start")
	pump(t, writer, doc, wss)
	slow := stalled(e, "peer-slow", doc)
	for i := 0; ; i++ {
		select {
		case <-slow.p.closed:
			if slow.p.code != wire.CloseSlowConsumer {
				t.Fatalf("the slow peer was closed with %d, want %d", slow.p.code, wire.CloseSlowConsumer)
			}
			return
		default:
		}
		if i == 200 {
			t.Fatal("200 edits of 2 KiB did not overflow a 16 KiB queue")
		}
		edit(t, wd, strings.Repeat("x", 2048)+string(rune('a'+i%26)))
		pump(t, writer, doc, wss)
	}
}

func edit(t *testing.T, d *automerge.Doc, v string) {
	t.Helper()
	if err := d.RootMap().Set("v", v); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("edit"); err != nil {
		t.Fatal(err)
	}
}

// TestEphemeralRateLimit: past its burst a connection's ephemeral messages
// are dropped; a connection that keeps flooding is closed with 1008.
func TestEphemeralRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{EphemeralRate: 1, EphemeralBurst: 10})
	doc := wire.NewDocID()
	a, b := e.join("peer-a"), e.join("peer-b")
	a.open(doc)
	b.open(doc)
	for i := range 20 {
		a.send(ephemeral(a, doc, i+1))
	}
	got := 0
	for {
		m, ok := b.next(200 * time.Millisecond)
		if !ok {
			break
		}
		if m.Type == wire.TypeEphemeral {
			got++
		}
	}
	if got < 10 || got > 11 {
		t.Fatalf("b received %d of 20 messages sent at once, want the burst of 10 (11 if a token refilled)", got)
	}
	// Far over the rate: a flooder. Five bursts' worth of drops close it.
	for i := 20; i < 200; i++ {
		b, err := wire.Encode(ephemeral(a, doc, i+1))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case a.p.in <- frame{kind: hub.FrameBinary, data: b}:
		case <-a.p.closed:
		}
	}
	a.expectClosed(wire.ClosePolicyViolation)
	b.open(wire.NewDocID()) // b carries on
}

// TestMaxDocsPerConnection: past MaxDocs a connection's new documents are
// answered doc-unavailable, with one error message; the ones it has keep
// working.
func TestMaxDocsPerConnection(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{MaxDocs: 2})
	a := e.join("peer-a")
	first, second := wire.NewDocID(), wire.NewDocID()
	a.open(first)
	a.open(second)
	d := automerge.New()
	sm, _ := automerge.NewSyncState(d).GenerateMessage()
	a.send(wire.Message{Type: wire.TypeRequest, SenderID: a.id, DocumentID: wire.NewDocID(), Data: sm.Bytes()})
	if m := a.expect(wire.TypeError); !strings.Contains(m.ErrorMessage, "limit") {
		t.Fatalf("error %q does not mention the limit", m.ErrorMessage)
	}
	a.expect(wire.TypeDocUnavailable)
	a.send(wire.Message{Type: wire.TypeRequest, SenderID: a.id, DocumentID: wire.NewDocID(), Data: sm.Bytes()})
	if m := a.expect(wire.TypeDocUnavailable); m.Type != wire.TypeDocUnavailable {
		t.Fatal(m)
	}
	// A document it has is still its own: no limit error for it.
	a.send(wire.Message{Type: wire.TypeRequest, SenderID: a.id, DocumentID: first, Data: sm.Bytes()})
	if m, ok := a.next(200 * time.Millisecond); ok && m.Type == wire.TypeError {
		t.Fatalf("a document within the limit got an error: %q", m.ErrorMessage)
	}
}

// slowLoads holds every Load until release is closed, like a store that
// is slow to answer.
type slowLoads struct {
	room.Store
	release chan struct{}
}

func (s slowLoads) Load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	select {
	case <-s.release:
	case <-ctx.Done():
		return room.StoredDoc{}, ctx.Err()
	}
	return s.Store.Load(ctx, id)
}

// TestKeepaliveSparesPeersOfBusyRooms: a peer whose pongs cannot be read
// because its connection waits for a busy room is not taken for dead; a
// peer that stops answering while its reader is free is closed with 4003.
func TestKeepaliveSparesPeersOfBusyRooms(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	e := newEnvWith(t, hub.Config{PingInterval: 10 * time.Millisecond, PongTimeout: 50 * time.Millisecond},
		room.Config{InboxSize: 1},
		func(s room.Store) room.Store { return slowLoads{Store: s, release: release} })
	busy := e.join("peer-busy")
	deaf := e.join("peer-deaf")
	deaf.p.deaf.Store(true)
	deaf.expectClosed(wire.CloseDeadPeer)

	// The room is still loading: its inbox fills, and busy's reader blocks
	// handing it more, so busy's pongs go unread.
	doc := wire.NewDocID()
	sm, _ := automerge.NewSyncState(automerge.New()).GenerateMessage()
	for range 4 {
		busy.send(wire.Message{Type: wire.TypeRequest, SenderID: busy.id, DocumentID: doc, Data: sm.Bytes()})
	}
	testwait.For(t, testwait.Default, "busy's reader to block on the room", func() bool {
		return len(busy.p.in) > 0 && !busy.p.reading.Load()
	})
	select {
	case <-busy.p.closed:
		t.Fatalf("the busy room's peer was closed with %d", busy.p.code)
	case <-time.After(300 * time.Millisecond): // many pong timeouts
	}
	close(release)
	testwait.For(t, testwait.Default, "busy's messages to be taken", func() bool { return len(busy.p.in) == 0 })
	select {
	case <-busy.p.closed:
		t.Fatalf("the busy room's peer was closed with %d", busy.p.code)
	default:
	}
}

// TestRejoinNeedsTheSamePrincipal: with tokens, a peer ID is taken over only
// by the same token or subject; anyone else is refused with 4409 and the
// connection that has it stays.
func TestRejoinNeedsTheSamePrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{})
	alice := hub.Session{TokenID: "t-alice-1", Subject: "alice"}
	first := e.joinAs("peer-shared", alice)

	mallory := e.connect(newPipe())
	mallory.id = "peer-shared"
	mallory.send(wire.Message{Type: wire.TypeJoin, SenderID: mallory.id})
	mallory.expect(wire.TypeError)
	mallory.expectClosed(wire.ClosePeerIDInUse)
	select {
	case <-first.p.closed:
		t.Fatalf("the first connection was closed (%d) by another principal's join", first.p.code)
	default:
	}
	first.open(wire.NewDocID()) // still served

	// The same subject with a fresh token (a reconnect) takes it over.
	e.joinAs("peer-shared", hub.Session{TokenID: "t-alice-2", Subject: "alice"})
	first.expectClosed(wire.CloseReplaced)
}

// TestKeepaliveSparesPeersApplyingALargeMessage: a peer that stops
// answering pings right after we sent it a large message (as a stock client
// does while it applies one) is not taken for dead while it may still be
// applying it (pongGracePerMiB), and is closed with 4003 once that is over.
func TestKeepaliveSparesPeersApplyingALargeMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, hub.Config{PingInterval: 10 * time.Millisecond, PongTimeout: 50 * time.Millisecond})
	doc := wire.NewDocID()
	wd := automerge.New()
	b := make([]byte, 400<<10) // random letters: the change does not deflate
	for i := range b {
		b[i] = 'a' + byte((i*7919+i/13)%26)
	}
	if err := wd.RootMap().Set("big", string(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := wd.Commit("big"); err != nil {
		t.Fatal(err)
	}
	writer := e.join("peer-writer")
	pump(t, writer, doc, automerge.NewSyncState(wd))

	reader := e.join("peer-reader")
	reader.p.deaf.Store(true) // from now on it answers no ping
	sm, _ := automerge.NewSyncState(automerge.New()).GenerateMessage()
	reader.send(wire.Message{Type: wire.TypeRequest, SenderID: reader.id, DocumentID: doc, Data: sm.Bytes()})
	if m := reader.expect(wire.TypeSync); len(m.Data) < 400<<10 {
		t.Fatalf("the reader got a %d-byte sync message, want the whole change", len(m.Data))
	}
	sentAt := time.Now()
	select {
	case <-reader.p.closed:
		t.Fatalf("the reader was closed with %d while it may still be applying", reader.p.code)
	case <-time.After(600 * time.Millisecond): // a dozen pong timeouts; the grace is about 1.6 s
	}
	reader.expectClosed(wire.CloseDeadPeer)
	if waited := time.Since(sentAt); waited < time.Second {
		t.Fatalf("closed %v after the large message, before its grace ran out", waited)
	}
}
