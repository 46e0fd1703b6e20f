// Package wstest is a minimal automerge-repo client in Go for tests: one
// WebSocket to a Tandem server, one document, one automerge-go sync state.
// The api and cmd/tandem tests drive the server with it.
package wstest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/automerge/automerge-go"
	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/sync/wire"
)

// Peer is one client connection. A reader goroutine feeds its messages in,
// so that reads can time out without closing the connection
// (coder/websocket closes a connection when a Read's context ends).
type Peer struct {
	ID    wire.PeerID
	DocID wire.DocID
	Doc   *automerge.Doc
	Sync  *automerge.SyncState

	c     *websocket.Conn
	in    chan wire.Message
	errc  chan error
	ended chan struct{}
}

// ErrNoMessage is returned by TryRead when no message is waiting.
var ErrNoMessage = errors.New("wstest: no message waiting")

// Dial connects to the server at url (ws://, or http:// which is turned
// into ws://), joins as id and waits for the server's peer message. The peer
// syncs docID with doc, through a new sync state.
func Dial(ctx context.Context, url string, id wire.PeerID, docID wire.DocID, doc *automerge.Doc) (*Peer, error) {
	if strings.HasPrefix(url, "http") {
		url = "ws" + strings.TrimPrefix(url, "http")
	}
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c.SetReadLimit(200 << 20)
	p := &Peer{ID: id, DocID: docID, Doc: doc, Sync: automerge.NewSyncState(doc), c: c,
		in: make(chan wire.Message, 256), errc: make(chan error, 1), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
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
	if err := p.Write(ctx, wire.Message{Type: wire.TypeJoin, SenderID: id, SupportedProtocolVersions: []string{wire.ProtocolVersion}}); err != nil {
		c.CloseNow()
		return nil, err
	}
	m, err := p.Read(ctx)
	if err != nil || m.Type != wire.TypePeer {
		c.CloseNow()
		return nil, fmt.Errorf("handshake: got %+v, %v; want a peer message", m, err)
	}
	return p, nil
}

// Close drops the connection at once.
func (p *Peer) Close() { p.c.CloseNow() }

// CloseWith closes the connection with a close handshake.
func (p *Peer) CloseWith(code websocket.StatusCode, reason string) error {
	return p.c.Close(code, reason)
}

// Ended is closed once the connection has ended, by either side.
func (p *Peer) Ended() <-chan struct{} { return p.ended }

// Write sends one message.
func (p *Peer) Write(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	if err := p.c.Write(ctx, websocket.MessageBinary, b); err != nil {
		return fmt.Errorf("peer %s: write: %w", p.ID, err)
	}
	return nil
}

// Read returns the next message, or ctx's error when none comes in time
// (the connection stays open), or the connection's error once it ended.
func (p *Peer) Read(ctx context.Context) (wire.Message, error) {
	select {
	case m := <-p.in:
		return m, nil
	case err := <-p.errc:
		p.errc <- err
		return wire.Message{}, fmt.Errorf("peer %s: connection ended: %w", p.ID, err)
	case <-ctx.Done():
		return wire.Message{}, ctx.Err()
	}
}

// TryRead returns a message that has arrived, or ErrNoMessage without
// waiting.
func (p *Peer) TryRead() (wire.Message, error) {
	select {
	case m := <-p.in:
		return m, nil
	case err := <-p.errc:
		p.errc <- err
		return wire.Message{}, fmt.Errorf("peer %s: connection ended: %w", p.ID, err)
	default:
		return wire.Message{}, ErrNoMessage
	}
}

// SendSync sends the sync state's next message as typ (sync or request), if
// it has one.
func (p *Peer) SendSync(ctx context.Context, typ string) error {
	sm, ok := p.Sync.GenerateMessage()
	if !ok {
		return nil
	}
	return p.Write(ctx, wire.Message{Type: typ, SenderID: p.ID, DocumentID: p.DocID, Data: sm.Bytes()})
}

// Apply applies a sync message from the server to the peer's document and
// returns the server's heads. Other messages are ignored (nil heads).
func (p *Peer) Apply(m wire.Message) ([]automerge.ChangeHash, error) {
	if m.Type != wire.TypeSync {
		return nil, nil
	}
	if m.DocumentID != p.DocID {
		return nil, fmt.Errorf("peer %s: sync message for %s, want %s", p.ID, m.DocumentID, p.DocID)
	}
	sm, err := p.Sync.ReceiveMessage(m.Data)
	if err != nil {
		return nil, fmt.Errorf("peer %s: receive sync: %w", p.ID, err)
	}
	return sm.Heads(), nil
}

// Receive reads the next message and applies it if it is a sync message,
// returning the server's heads.
func (p *Peer) Receive(ctx context.Context) (wire.Message, []automerge.ChangeHash, error) {
	m, err := p.Read(ctx)
	if err != nil {
		return m, nil, err
	}
	heads, err := p.Apply(m)
	return m, heads, err
}
