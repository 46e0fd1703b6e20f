package api_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/wstest"
	"github.com/tandem-sync/tandem/sync/wire"
)

// wsPeer is wstest.Peer for tests that fail on any error, and that keep
// the server's last advertised heads.
type wsPeer struct {
	*wstest.Peer
	t *testing.T
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
	p, err := wstest.Dial(ctx, httpURL, id, docID, doc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &wsPeer{Peer: p, t: t}
}

// read returns the next message; it fails the test when none comes before
// ctx ends or the connection breaks.
func (p *wsPeer) read(ctx context.Context) wire.Message {
	p.t.Helper()
	m, err := p.Read(ctx)
	if err != nil {
		p.t.Fatalf("peer %s: %v", p.ID, err)
	}
	return m
}

// sendSync sends the sync state's next message, if it has one, as typ
// (sync or request).
func (p *wsPeer) sendSync(ctx context.Context, typ string) {
	p.t.Helper()
	if err := p.SendSync(ctx, typ); err != nil {
		p.t.Fatal(err)
	}
}

// handle applies a sync message to the peer's document, records the
// server's heads and answers it.
func (p *wsPeer) handle(ctx context.Context, m wire.Message) {
	p.t.Helper()
	if m.Type != wire.TypeSync {
		return
	}
	heads, err := p.Apply(m)
	if err != nil {
		p.t.Fatal(err)
	}
	p.heads = heads
	p.sendSync(ctx, wire.TypeSync)
}

// syncUntil handles the server's messages until cond holds for the last
// message; messages that are not sync messages are passed to cond too.
func (p *wsPeer) syncUntil(ctx context.Context, what string, cond func(m wire.Message) bool) wire.Message {
	p.t.Helper()
	for {
		select {
		case <-ctx.Done():
			p.t.Fatalf("peer %s: waiting for %s: %v", p.ID, what, ctx.Err())
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
		m, err := p.TryRead()
		if errors.Is(err, wstest.ErrNoMessage) {
			return
		}
		if err != nil {
			p.t.Fatal(err)
		}
		if m.Type == wire.TypeError {
			p.t.Fatalf("peer %s: server sent an error: %+v", p.ID, m)
		}
		p.handle(ctx, m)
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
			p.t.Fatalf("peer %s: document %s unavailable", p.ID, p.DocID)
		}
		return sameHeads(p.Doc.Heads(), want)
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
