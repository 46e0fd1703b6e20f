package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Config tunes the hub. The zero value of each field selects its default.
type Config struct {
	// PeerID is the server's peer ID, sent in peer messages. Empty means
	// "tandem".
	PeerID wire.PeerID
	// StorageID is the store's storage ID, advertised in peer metadata so
	// that clients keep their sync state for this server. Required.
	StorageID string
	// QueueSize bounds each connection's outbound queue, in messages; a
	// peer whose queue is full is disconnected with CloseSlowConsumer.
	// Zero means 1024.
	QueueSize int
	// WriteTimeout bounds each frame write. Zero means 10 s.
	WriteTimeout time.Duration
	// Logger receives connection events. Nil discards them.
	Logger *slog.Logger
	// Metrics receives counts. Nil records nothing.
	Metrics Metrics
}

// Hub tracks the connected peers and routes their messages.
type Hub struct {
	cfg   Config
	rooms *room.Registry
	log   *slog.Logger
	seen  *ephemeralSeen

	mu     sync.Mutex
	byPeer map[wire.PeerID]*Conn // the current connection of each joined peer
	all    map[*Conn]struct{}
	closed bool
}

// New returns a hub that hands documents to rooms.
func New(rooms *room.Registry, cfg Config) *Hub {
	if cfg.PeerID == "" {
		cfg.PeerID = "tandem"
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	return &Hub{
		cfg:    cfg,
		rooms:  rooms,
		log:    cfg.Logger,
		seen:   newEphemeralSeen(100_000),
		byPeer: make(map[wire.PeerID]*Conn),
		all:    make(map[*Conn]struct{}),
	}
}

// Serve runs one connection until it ends: it reads and handles frames on
// the calling goroutine and writes from a goroutine of its own. It returns
// when the connection is closed, by either side, or when the session's
// token expires.
func (h *Hub) Serve(ctx context.Context, t Transport, sess Session) {
	c := newConn(h, t, sess)
	if !h.track(c) {
		_ = t.Close(wire.CloseGoingAway, "server shutting down")
		return
	}
	defer h.untrack(c)
	h.cfg.Metrics.ConnOpened()
	defer h.cfg.Metrics.ConnClosed()
	c.serve(ctx)
}

// Len returns the number of open connections.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.all)
}

// Close disconnects every peer with CloseGoingAway and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	h.closed = true
	conns := make([]*Conn, 0, len(h.all))
	for c := range h.all {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.close(wire.CloseGoingAway, "server shutting down")
	}
}

func (h *Hub) track(c *Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.all[c] = struct{}{}
	return true
}

func (h *Hub) untrack(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.all, c)
	if id := c.ID(); id != "" && h.byPeer[id] == c {
		delete(h.byPeer, id)
	}
}

// Revoke closes every connection whose token has the ID jti, with
// wire.CloseRevoked, and returns how many it closed.
func (h *Hub) Revoke(jti string) int {
	if jti == "" {
		return 0
	}
	h.mu.Lock()
	var hit []*Conn
	for c := range h.all {
		if c.sess.TokenID == jti {
			hit = append(hit, c)
		}
	}
	h.mu.Unlock()
	for _, c := range hit {
		c.Fail(wire.CloseRevoked, "access token revoked")
	}
	return len(hit)
}

// DisconnectDoc closes, with wire.CloseRevoked, the connections of the
// peers in the document's room, and returns their sessions (whose token IDs
// the caller may revoke).
func (h *Hub) DisconnectDoc(doc wire.DocID) []Session {
	var out []Session
	for _, p := range h.rooms.Peers(doc) {
		c, ok := p.(*Conn)
		if !ok {
			continue
		}
		out = append(out, c.sess)
		c.Fail(wire.CloseRevoked, "access to document "+string(doc)+" revoked")
	}
	return out
}

// register makes c the connection of its peer ID and returns the one it
// replaces, if any.
func (h *Hub) register(c *Conn) *Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := h.byPeer[c.ID()]
	h.byPeer[c.ID()] = c
	return old
}
