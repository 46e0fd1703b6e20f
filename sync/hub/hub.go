package hub

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Defaults for the zero values of Config.
const (
	DefaultQueueBytes     = 32 << 20
	DefaultMaxDocs        = 5000
	DefaultEphemeralRate  = 100
	DefaultEphemeralBurst = 200
	DefaultPingInterval   = 5 * time.Second
	DefaultPongTimeout    = 10 * time.Second
)

// Config tunes the hub. The zero value of each field selects its default.
type Config struct {
	// PeerID is the server's peer ID, sent in peer messages. Empty means
	// "tandem".
	PeerID wire.PeerID
	// StorageID is the store's storage ID, advertised in peer metadata so
	// that clients keep their sync state for this server. Required.
	StorageID string
	// QueueBytes bounds each connection's outbound queue, in bytes of
	// payload: a peer whose queue would pass it is disconnected with
	// CloseSlowConsumer (one message larger than the bound still goes
	// through an empty queue). Ephemeral messages for a peer whose queue is
	// half full are dropped instead. Zero means DefaultQueueBytes.
	QueueBytes int64
	// MaxDocs bounds the documents one connection may sync; further
	// documents are answered doc-unavailable, with one error message. Zero
	// means DefaultMaxDocs.
	MaxDocs int
	// EphemeralRate and EphemeralBurst are each connection's token bucket
	// for the ephemeral messages it sends: per second, and at once. Excess
	// messages are dropped; a connection that keeps sending at many times
	// the rate is closed with ClosePolicyViolation. Zero means
	// DefaultEphemeralRate and DefaultEphemeralBurst.
	EphemeralRate  float64
	EphemeralBurst int
	// PingInterval is how often every peer is pinged. Zero means
	// DefaultPingInterval; negative turns keepalive off.
	PingInterval time.Duration
	// PongTimeout is how long a ping's pong may take before the peer is
	// closed with CloseDeadPeer, unless it sent a frame meanwhile or its
	// connection is waiting for a busy room. Zero means DefaultPongTimeout.
	PongTimeout time.Duration
	// WriteTimeout bounds each frame write. Zero means 10 s.
	WriteTimeout time.Duration
	// Relay, when set, also receives every ephemeral message relayed to
	// this node's peers, for the other nodes of a cluster.
	Relay Relay
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

	stop, done chan struct{} // the keepalive loop's
}

// New returns a hub that hands documents to rooms.
func New(rooms *room.Registry, cfg Config) *Hub {
	if cfg.PeerID == "" {
		cfg.PeerID = "tandem"
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = DefaultQueueBytes
	}
	if cfg.MaxDocs <= 0 {
		cfg.MaxDocs = DefaultMaxDocs
	}
	if cfg.EphemeralRate <= 0 {
		cfg.EphemeralRate = DefaultEphemeralRate
	}
	if cfg.EphemeralBurst <= 0 {
		cfg.EphemeralBurst = DefaultEphemeralBurst
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = DefaultPongTimeout
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
	h := &Hub{
		cfg:    cfg,
		rooms:  rooms,
		log:    cfg.Logger,
		seen:   newEphemeralSeen(100_000),
		byPeer: make(map[wire.PeerID]*Conn),
		all:    make(map[*Conn]struct{}),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go h.keepAlive()
	return h
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
	if !h.closed {
		close(h.stop)
	}
	h.closed = true
	conns := make([]*Conn, 0, len(h.all))
	for c := range h.all {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.close(wire.CloseGoingAway, "server shutting down")
	}
	<-h.done
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
// replaces, if any, or reports false (registering nothing) when that
// connection belongs to someone else (see mayReplace).
func (h *Hub) register(c *Conn) (old *Conn, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old = h.byPeer[c.ID()]
	if old != nil && !mayReplace(c.sess, old.sess) {
		return nil, false
	}
	h.byPeer[c.ID()] = c
	return old, true
}

// mayReplace reports whether a connection with session s may take over the
// peer ID of a connection with session old. Anonymous peers always may, as
// with the official server (a reconnecting client reuses its peer ID while
// the server may not have noticed its old connection dying yet). Once a
// token is involved, only the same principal may: the same token, or tokens
// with the same non-empty subject, so that nobody can knock another user's
// connection off by joining with its peer ID.
func mayReplace(s, old Session) bool {
	switch {
	case s.TokenID == "" && old.TokenID == "" && s.Subject == "" && old.Subject == "":
		return true
	case s.TokenID != "" && s.TokenID == old.TokenID:
		return true
	default:
		return s.Subject != "" && s.Subject == old.Subject
	}
}
