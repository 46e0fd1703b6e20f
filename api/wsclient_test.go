package api_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/sync/wire"
)

// wsPeer is a minimal automerge-repo client: one WebSocket, one document,
// one sync state. A reader goroutine feeds in, so reads can time out without
// closing the connection (coder/websocket closes it when a Read's context
// ends).
type wsPeer struct {
	t     *testing.T
	c     *websocket.Conn
	id    wire.PeerID
	docID wire.DocID
	doc   *automerge.Doc
	ss    *automerge.SyncState
	in    chan wire.Message
	errc  chan error
	// heads are the server's heads from its last sync message.
	heads []automerge.ChangeHash
}

// dialPeer connects to the server at httpURL, joins as id and waits for the
// server's peer message. It syncs docID with a new, empty document. The
// connection is closed when the test ends.
func dialPeer(t *testing.T, ctx context.Context, httpURL string, id wire.PeerID, docID wire.DocID) *wsPeer {
	t.Helper()
	return dialPeerWith(t, ctx, httpURL, id, docID, automerge.New())
}

// dialPeerWith is dialPeer for a peer that already has a version of the
// document.
func dialPeerWith(t *testing.T, ctx context.Context, httpURL string, id wire.PeerID, docID wire.DocID, doc *automerge.Doc) *wsPeer {
	t.Helper()
	url := "ws" + strings.TrimPrefix(httpURL, "http")
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.CloseNow() })
	p := &wsPeer{t: t, c: c, id: id, docID: docID, doc: doc, ss: automerge.NewSyncState(doc),
		in: make(chan wire.Message, 256), errc: make(chan error, 1)}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				p.errc <- err
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				p.errc <- err
				return
			}
			p.in <- m
		}
	}()
	p.write(ctx, wire.Message{Type: wire.TypeJoin, SenderID: id, SupportedProtocolVersions: []string{wire.ProtocolVersion}})
	if m := p.read(ctx); m.Type != wire.TypePeer {
		t.Fatalf("handshake: got %+v, want a peer message", m)
	}
	return p
}

func (p *wsPeer) write(ctx context.Context, m wire.Message) {
	p.t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := p.c.Write(ctx, websocket.MessageBinary, b); err != nil {
		p.t.Fatalf("peer %s: write: %v", p.id, err)
	}
}

// read returns the next message; it fails the test when none comes before
// ctx ends or the connection breaks.
func (p *wsPeer) read(ctx context.Context) wire.Message {
	p.t.Helper()
	select {
	case m := <-p.in:
		return m
	case err := <-p.errc:
		p.errc <- err
		p.t.Fatalf("peer %s: connection ended: %v", p.id, err)
	case <-ctx.Done():
		p.t.Fatalf("peer %s: no message in time: %v", p.id, ctx.Err())
	}
	return wire.Message{}
}

// sendSync sends the sync state's next message, if it has one, as typ
// (sync or request).
func (p *wsPeer) sendSync(ctx context.Context, typ string) {
	p.t.Helper()
	sm, ok := p.ss.GenerateMessage()
	if !ok {
		return
	}
	p.write(ctx, wire.Message{Type: typ, SenderID: p.id, TargetID: "tandem-test", DocumentID: p.docID, Data: sm.Bytes()})
}

// handle applies a sync message to the peer's document, records the
// server's heads and answers it.
func (p *wsPeer) handle(ctx context.Context, m wire.Message) {
	p.t.Helper()
	if m.Type != wire.TypeSync {
		return
	}
	if m.DocumentID != p.docID {
		p.t.Fatalf("sync message for %s, want %s", m.DocumentID, p.docID)
	}
	sm, err := p.ss.ReceiveMessage(m.Data)
	if err != nil {
		p.t.Fatalf("peer %s: receive sync: %v", p.id, err)
	}
	p.heads = sm.Heads()
	p.sendSync(ctx, wire.TypeSync)
}

// syncUntil handles the server's messages until cond holds for the last
// message; messages that are not sync messages are passed to cond too.
func (p *wsPeer) syncUntil(ctx context.Context, what string, cond func(m wire.Message) bool) wire.Message {
	p.t.Helper()
	for {
		select {
		case <-ctx.Done():
			p.t.Fatalf("peer %s: waiting for %s: %v", p.id, what, ctx.Err())
		default:
		}
		m := p.read(ctx)
		p.handle(ctx, m)
		if cond(m) {
			return m
		}
	}
}

// drain handles the messages that have arrived, without waiting; an error
// message from the server fails the test.
func (p *wsPeer) drain(ctx context.Context) {
	p.t.Helper()
	for {
		select {
		case m := <-p.in:
			if m.Type == wire.TypeError {
				p.t.Fatalf("peer %s: server sent an error: %+v", p.id, m)
			}
			p.handle(ctx, m)
		case err := <-p.errc:
			p.errc <- err
			p.t.Fatalf("peer %s: connection ended: %v", p.id, err)
		default:
			return
		}
	}
}

// serverHas reports whether the server's last advertised heads include h
// (so the server has stored the change h).
func (p *wsPeer) serverHas(h automerge.ChangeHash) bool { return slices.Contains(p.heads, h) }

// request asks the server for the document and syncs until the peer has
// the heads want.
func (p *wsPeer) request(ctx context.Context, want []automerge.ChangeHash) {
	p.t.Helper()
	p.sendSync(ctx, wire.TypeRequest)
	p.syncUntil(ctx, fmt.Sprintf("heads %v", want), func(m wire.Message) bool {
		if m.Type == wire.TypeDocUnavailable {
			p.t.Fatalf("peer %s: document %s unavailable", p.id, p.docID)
		}
		return sameHeads(p.doc.Heads(), want)
	})
}

func sameHeads(a, b []automerge.ChangeHash) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y automerge.ChangeHash) int { return strings.Compare(x.String(), y.String()) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// testCtx returns a context bounded for one test's waits.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
