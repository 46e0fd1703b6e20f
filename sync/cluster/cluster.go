// Package cluster lets several Tandem nodes that share one Postgres store
// serve the same documents: a node publishes each durable change of a
// document it hosts on the document's NATS subject, and the other nodes
// hosting the document apply it to their rooms and sync their own peers.
// Messages carry the store's log positions, so a node that sees a gap,
// subscribes, or reconnects to NATS reads what it lacks from the store's
// change log, which is the source of truth. Presence (ephemeral) messages
// cross nodes the same way, never stored; deletes too. See "Clustering" in
// docs/ARCHITECTURE.md.
//
// A Node implements room.Replicator and hub.Relay: give it to the room
// registry and the hub, then Start it with them.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// DefaultPrefix is the subject prefix of a zero Config.
const DefaultPrefix = "tandem"

// Config configures a Node.
type Config struct {
	// URL is the NATS server URL (or a comma-separated list of them).
	URL string
	// NodeID names this node in its messages, so that it ignores its own;
	// unique per node. Required.
	NodeID string
	// Prefix starts every subject: a document's is <Prefix>.doc.<id>.
	// Nodes of one cluster share it; clusters sharing a NATS server need
	// different ones. Empty means DefaultPrefix.
	Prefix string
	// ConnectTimeout bounds the first connection attempt. Zero means 5 s.
	// A node whose NATS server is unreachable at start fails to start;
	// once connected, it reconnects for ever.
	ConnectTimeout time.Duration
	// Logger receives cluster events. Nil discards them.
	Logger *slog.Logger
}

// Node is one node's connection to the cluster.
type Node struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn

	ctx    context.Context // ends at Close: deliveries to rooms give up
	cancel context.CancelFunc

	mu      sync.Mutex
	rooms   *room.Registry
	hub     *hub.Hub
	follows map[wire.DocID]*follow
	closed  bool
}

// follow is one document's subscription, shared by the rooms that follow
// it (an evicted room and its successor may overlap).
type follow struct {
	sub  *nats.Subscription
	refs int
}

// Connect connects to NATS. The node delivers nothing until Start.
func Connect(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: a node ID is required")
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if strings.ContainsAny(cfg.Prefix, " \t\r\n*>") || strings.HasPrefix(cfg.Prefix, ".") || strings.HasSuffix(cfg.Prefix, ".") {
		return nil, fmt.Errorf("cluster: subject prefix %q is not a valid NATS subject prefix", cfg.Prefix)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		follows: make(map[wire.DocID]*follow),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	nc, err := nats.Connect(cfg.URL,
		nats.Name("tandem "+cfg.NodeID),
		nats.NoEcho(), // a node's own messages are not sent back to it
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.PingInterval(5*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // Close
			}
			n.log.Warn("cluster: disconnected from NATS; changes of other nodes are read from the store once back", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.log.Info("cluster: reconnected to NATS; catching up from the store", "server", c.ConnectedUrlRedacted())
			n.catchUpAll()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			n.log.Warn("cluster: NATS error", "err", err)
			if sub != nil && errors.Is(err, nats.ErrSlowConsumer) {
				if id, ok := n.docOf(sub.Subject); ok {
					n.catchUp(id)
				}
			}
		}),
	)
	if err != nil {
		n.cancel()
		return nil, fmt.Errorf("cluster: connect to NATS at %s: %w", redact(cfg.URL), err)
	}
	n.nc = nc
	n.log.Info("cluster: connected to NATS", "server", nc.ConnectedUrlRedacted(), "prefix", cfg.Prefix)
	return n, nil
}

// Start makes the node deliver other nodes' messages to rooms and to the
// hub's peers.
func (n *Node) Start(rooms *room.Registry, h *hub.Hub) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rooms, n.hub = rooms, h
}

// Close unsubscribes and closes the NATS connection, after publishing
// what is buffered. Close the room registry first, so that the rooms'
// last changes are published.
func (n *Node) Close() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	n.cancel()
	if err := n.nc.Drain(); err != nil {
		n.nc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !n.nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	n.nc.Close()
}

// subject is the document's subject.
func (n *Node) subject(id wire.DocID) string { return n.cfg.Prefix + ".doc." + string(id) }

// docOf returns the document whose subject s is.
func (n *Node) docOf(s string) (wire.DocID, bool) {
	rest, ok := strings.CutPrefix(s, n.cfg.Prefix+".doc.")
	if !ok {
		return "", false
	}
	id, err := wire.ParseDocID(rest)
	return id, err == nil
}

// Follow implements room.Replicator: it subscribes to the document's
// subject and waits (briefly) until NATS has the subscription, so that
// whatever is published after the room's load reaches the room.
func (n *Node) Follow(id wire.DocID) {
	n.mu.Lock()
	if f := n.follows[id]; f != nil {
		f.refs++
		n.mu.Unlock()
		return
	}
	if n.closed {
		n.mu.Unlock()
		return
	}
	sub, err := n.nc.Subscribe(n.subject(id), func(m *nats.Msg) { n.receive(id, m.Data) })
	if err != nil {
		n.mu.Unlock()
		n.log.Error("cluster: cannot subscribe; the document follows other nodes only through the store", "doc", string(id), "err", err)
		return
	}
	n.follows[id] = &follow{sub: sub, refs: 1}
	n.mu.Unlock()
	if n.nc.IsConnected() {
		if err := n.nc.FlushTimeout(2 * time.Second); err != nil {
			n.log.Warn("cluster: subscription not confirmed", "doc", string(id), "err", err)
		}
	}
}

// Unfollow implements room.Replicator.
func (n *Node) Unfollow(id wire.DocID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.follows[id]
	if f == nil {
		return
	}
	if f.refs--; f.refs > 0 {
		return
	}
	delete(n.follows, id)
	if err := f.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		n.log.Debug("cluster: unsubscribe", "doc", string(id), "err", err)
	}
}

// Committed implements room.Replicator: it publishes the changes with
// their log positions. A publish that fails (NATS gone and its buffer
// full) is only logged: the other nodes read the changes from the store
// when they reconnect or see the gap.
func (n *Node) Committed(id wire.DocID, changes []core.Change, first, last int64) {
	b := encodeChanges(n.cfg.NodeID, changes, first, last)
	if limit := n.nc.MaxPayload(); limit > 0 && int64(len(b)) > limit {
		// Too large for NATS: publish the positions alone, and the other
		// nodes read the changes from the store.
		b = encodeChanges(n.cfg.NodeID, nil, first, last)
	}
	n.publish(id, b)
}

// Deleted implements room.Replicator.
func (n *Node) Deleted(id wire.DocID) {
	n.publish(id, encodeDeleted(n.cfg.NodeID))
}

// Ephemeral implements hub.Relay.
func (n *Node) Ephemeral(msg wire.Message) {
	b, err := encodeEphemeral(n.cfg.NodeID, msg)
	if err != nil {
		n.log.Debug("cluster: ephemeral message not relayed", "err", err)
		return
	}
	n.publish(msg.DocumentID, b)
}

func (n *Node) publish(id wire.DocID, data []byte) {
	if err := n.nc.Publish(n.subject(id), data); err != nil {
		n.log.Debug("cluster: publish failed", "doc", string(id), "err", err)
	}
}

// receive handles a message on a document's subject (on the
// subscription's goroutine, which waits while the room's inbox is full).
func (n *Node) receive(id wire.DocID, data []byte) {
	m, err := decode(data)
	if err != nil {
		n.log.Warn("cluster: bad message", "doc", string(id), "err", err)
		return
	}
	if m.node == n.cfg.NodeID {
		return
	}
	n.mu.Lock()
	rooms, h := n.rooms, n.hub
	n.mu.Unlock()
	if rooms == nil {
		return
	}
	switch m.kind {
	case kindChanges:
		if len(m.changes) == 0 && m.first <= m.last {
			// Positions without their changes (too large to publish).
			err = rooms.CatchUp(n.ctx, id)
			break
		}
		err = rooms.Remote(n.ctx, id, m.changes, m.first, m.last)
	case kindDeleted:
		err = rooms.RemoteDeleted(n.ctx, id)
	case kindEphemeral:
		if m.ephemeral.DocumentID == id && h != nil {
			h.RelayEphemeral(m.ephemeral)
		}
	}
	if err != nil && n.ctx.Err() == nil {
		n.log.Debug("cluster: message not delivered", "doc", string(id), "err", err)
	}
}

// catchUpAll makes every followed document's room read what it lacks
// from the store (after a reconnect, messages may have been missed).
func (n *Node) catchUpAll() {
	n.mu.Lock()
	ids := make([]wire.DocID, 0, len(n.follows))
	for id := range n.follows {
		ids = append(ids, id)
	}
	n.mu.Unlock()
	for _, id := range ids {
		n.catchUp(id)
	}
}

// catchUp asks the document's room to read what it lacks from the store,
// without holding up the caller (a NATS callback).
func (n *Node) catchUp(id wire.DocID) {
	n.mu.Lock()
	rooms := n.rooms
	n.mu.Unlock()
	if rooms == nil {
		return
	}
	go func() {
		if err := rooms.CatchUp(n.ctx, id); err != nil && n.ctx.Err() == nil {
			n.log.Debug("cluster: catch-up not delivered", "doc", string(id), "err", err)
		}
	}()
}

// redact drops passwords from NATS URLs for logs.
func redact(urls string) string {
	parts := strings.Split(urls, ",")
	for i, u := range parts {
		if at := strings.LastIndex(u, "@"); at >= 0 {
			if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
				parts[i] = u[:scheme+3] + "***" + u[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

var (
	_ room.Replicator = (*Node)(nil)
	_ hub.Relay       = (*Node)(nil)
)
