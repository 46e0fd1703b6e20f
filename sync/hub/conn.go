package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Conn is one peer connection. Its reader runs on the goroutine that called
// Hub.Serve; writes go through a queue bounded in bytes, drained by a writer
// goroutine that runs only while there is something to write, so that rooms
// never block on a socket and an idle connection is one goroutine. Conn
// implements room.Peer.
type Conn struct {
	hub  *Hub
	t    Transport
	log  *slog.Logger
	sess Session

	out       outQueue
	closed    chan struct{}
	closeOnce sync.Once
	ending    atomic.Bool // Fail was called: nothing more is queued

	// peerID is set once by the reader when the peer joins; other
	// goroutines (rooms, revocations, timers) read it through ID.
	peerID atomic.Value // wire.PeerID
	meta   wire.PeerMetadata

	// For keepalive: when the reader last received a frame (unix
	// nanoseconds), and whether it is handing one to a room right now
	// (blocked while the room's inbox is full). Either shows the peer alive
	// even when a pong could not be read in time.
	lastFrame  atomic.Int64
	delivering atomic.Bool
	// applyingUntil (unix nanoseconds): the peer may still be applying a
	// large message we wrote, with no time to answer a ping (see
	// pongGracePerMiB).
	applyingUntil atomic.Int64

	// Owned by the reader goroutine: documents this connection synced, and
	// its ephemeral rate limit.
	docs      map[wire.DocID]struct{}
	ephemeral ephemeralLimit
	warnedMax bool      // the peer was told it reached MaxDocs
	handled   chan bool // a frame's handling is done: stop reading?
}

func newConn(h *Hub, t Transport, sess Session) *Conn {
	return &Conn{
		hub:       h,
		t:         t,
		sess:      sess,
		log:       h.log,
		out:       outQueue{max: h.cfg.QueueBytes},
		closed:    make(chan struct{}),
		docs:      make(map[wire.DocID]struct{}),
		handled:   make(chan bool),
		ephemeral: ephemeralLimit{rate: h.cfg.EphemeralRate, burst: float64(h.cfg.EphemeralBurst)},
	}
}

// ID returns the peer's ID (empty before join).
func (c *Conn) ID() wire.PeerID {
	id, _ := c.peerID.Load().(wire.PeerID)
	return id
}

// StorageID returns the storage ID the peer announced in join, unless it
// said it is ephemeral (room.Peer).
func (c *Conn) StorageID() string {
	if c.meta.IsEphemeral {
		return ""
	}
	return c.meta.StorageID
}

// Send queues msg without blocking. The sender ID defaults to the server's
// (relayed ephemeral messages keep their author's) and the target is this
// peer. A peer whose queue is full is disconnected.
func (c *Conn) Send(msg wire.Message) {
	if c.ending.Load() {
		return // failing: nothing after the error and the close
	}
	c.enqueueItem(outItem{msg: c.address(msg)})
}

// address sets a message's sender (the server's, unless it is a relayed
// ephemeral message's author) and its target, this peer.
func (c *Conn) address(msg wire.Message) wire.Message {
	if msg.SenderID == "" {
		msg.SenderID = c.hub.cfg.PeerID
	}
	msg.TargetID = c.ID()
	return msg
}

// Fail sends the peer an error message with reason, then closes the
// connection with code once the queue before it has been written.
func (c *Conn) Fail(code wire.CloseCode, reason string) {
	if c.ending.Swap(true) {
		return // already failing: the first reason stands
	}
	c.enqueueItem(outItem{msg: c.address(wire.Message{Type: wire.TypeError, ErrorMessage: reason})})
	c.enqueueItem(outItem{close: true, code: code, reason: reason})
}

func (c *Conn) sendError(reason string) {
	c.Send(wire.Message{Type: wire.TypeError, ErrorMessage: reason})
}

func (c *Conn) enqueueItem(it outItem) {
	switch c.out.push(it, c.writeLoop) {
	case dropped:
		c.hub.cfg.Metrics.Limited(LimitEphemeralBacklog)
	case overflow:
		c.log.Warn("peer too slow, disconnecting", "peer", string(c.ID()), "queued_bytes", c.out.queued())
		c.close(wire.CloseSlowConsumer, "outbound queue full")
	}
}

// close ends the connection at once; queued messages are dropped.
func (c *Conn) close(code wire.CloseCode, reason string) {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.out.shut()
		if code != wire.CloseNormal {
			c.hub.cfg.Metrics.Disconnected(int(code))
		}
		// A WebSocket close waits for the peer's answer: never make the
		// caller (maybe a room) wait for it.
		go func() { _ = c.t.Close(code, reason) }()
	})
}

func (c *Conn) serve(ctx context.Context) {
	if !c.sess.Expires.IsZero() {
		expiry := time.AfterFunc(time.Until(c.sess.Expires), func() {
			c.log.Info("access token expired, closing", "peer", string(c.ID()), "subject", c.sess.Subject)
			c.Fail(wire.CloseTokenExpired, "access token expired")
		})
		defer expiry.Stop()
	}
	defer func() {
		c.leaveRooms()
		// Let the writer send what was queued before a close (an error
		// message, say), but not for longer than one write may take.
		if w := c.out.writer(); w != nil {
			select {
			case <-w:
			case <-time.After(c.hub.cfg.WriteTimeout):
				c.close(wire.CloseNormal, "")
			}
		}
	}()
	// A read waits without a deadline or a context to watch (which would
	// cost every idle connection a registration): closing the transport
	// is what ends it.
	readCtx := context.WithoutCancel(ctx)
	for {
		kind, frame, err := c.t.Read(readCtx)
		if err != nil {
			if !errors.Is(err, ErrTransportClosed) && ctx.Err() == nil {
				c.log.Debug("connection read ended", "peer", string(c.ID()), "err", err)
			}
			if errors.Is(err, ErrFrameRefused) {
				c.hub.cfg.Metrics.Limited(LimitFrame)
			}
			c.close(wire.CloseNormal, "")
			return
		}
		c.lastFrame.Store(time.Now().UnixNano())
		// Decoding and handling a message take a deeper stack than
		// waiting in Read, where the reader spends its life; a goroutine
		// keeps its stack's largest size until a collection finds it
		// mostly unused, so the work runs on a goroutine of its own and
		// an idle connection's reader keeps a small stack.
		go func() { c.handled <- c.frame(ctx, kind, frame) }()
		if stop := <-c.handled; stop {
			return
		}
	}
}

// frame checks and handles one frame the reader read, and reports whether
// the connection must stop reading.
func (c *Conn) frame(ctx context.Context, kind FrameKind, frame []byte) (stop bool) {
	select {
	case <-c.closed:
		return true
	default:
	}
	if c.ending.Load() {
		return true // failing (bad input, expiry, revocation): read nothing more
	}
	if c.expired() {
		c.Fail(wire.CloseTokenExpired, "access token expired")
		return true
	}
	if kind != FrameBinary {
		c.sendError("text frames are not part of the protocol: send one CBOR message per binary frame")
		return false
	}
	msg, err := wire.Decode(frame)
	c.hub.cfg.Metrics.MessageIn(metricType(msg.Type), len(frame))
	if err != nil {
		c.log.Info("malformed frame, closing", "peer", string(c.ID()), "err", err)
		c.Fail(wire.CloseInvalidData, err.Error())
		return true
	}
	if err := c.handle(ctx, msg); err != nil {
		c.log.Info("closing connection", "peer", string(c.ID()), "err", err)
		return true
	}
	return false
}

// expired reports whether the session's token has expired.
func (c *Conn) expired() bool {
	return !c.sess.Expires.IsZero() && !time.Now().Before(c.sess.Expires)
}

// writeLoop writes what the queue holds until it is empty, then ends; push
// starts it again when there is more.
func (c *Conn) writeLoop() {
	for {
		it, ok := c.out.pop()
		if !ok {
			return
		}
		if it.close {
			c.close(it.code, it.reason)
			continue // pop now ends the loop
		}
		frame, err := wire.Encode(it.msg)
		if err != nil {
			c.log.Error("encode message", "type", it.msg.Type, "err", err)
			continue
		}
		wctx, cancel := context.WithTimeout(context.Background(), c.hub.cfg.WriteTimeout)
		err = c.t.Write(wctx, frame)
		cancel()
		if err != nil {
			if wctx.Err() != nil {
				c.log.Warn("write timed out, disconnecting", "peer", string(c.ID()))
				c.close(wire.CloseSlowConsumer, "write timed out")
			} else {
				c.close(wire.CloseNormal, "")
			}
			continue
		}
		c.hub.cfg.Metrics.MessageOut(it.msg.Type, len(frame))
		if len(frame) >= pongGraceMinBytes {
			until := time.Now().Add(pongGracePerMiB * time.Duration(len(frame)) >> 20).UnixNano()
			if until > c.applyingUntil.Load() {
				c.applyingUntil.Store(until) // only this goroutine stores it
			}
		}
	}
}

// handle processes one decoded message. A non-nil error ends the connection
// (the close has been queued already).
func (c *Conn) handle(ctx context.Context, msg wire.Message) error {
	if c.ID() == "" {
		if msg.Type != wire.TypeJoin {
			c.log.Debug("message before join dropped", "type", msg.Type)
			return nil
		}
		return c.join(msg)
	}
	if msg.Type == wire.TypeJoin {
		c.sendError("already joined")
		return nil
	}
	if msg.SenderID != c.ID() {
		// One socket cannot speak for another peer; this also drops the
		// echoes of relayed ephemeral messages.
		return nil
	}
	switch msg.Type {
	case wire.TypeSync, wire.TypeRequest:
		id, err := wire.ParseDocID(string(msg.DocumentID))
		if err != nil {
			c.sendError(fmt.Sprintf("%s for document %q: %v", msg.Type, wire.Excerpt(string(msg.DocumentID)), err))
			return nil
		}
		msg.DocumentID = id
		access := c.sess.access(id)
		if access == AccessNone {
			// Reveal nothing, not even whether the document exists.
			c.Send(wire.Message{Type: wire.TypeDocUnavailable, DocumentID: id})
			return nil
		}
		if _, ok := c.docs[id]; !ok && len(c.docs) >= c.hub.cfg.MaxDocs {
			c.hub.cfg.Metrics.Limited(LimitDocs)
			if !c.warnedMax {
				c.warnedMax = true
				c.sendError(fmt.Sprintf("this connection has %d documents open, the server's limit: further documents are answered doc-unavailable", len(c.docs)))
			}
			c.Send(wire.Message{Type: wire.TypeDocUnavailable, DocumentID: id})
			return nil
		}
		c.docs[id] = struct{}{}
		c.delivering.Store(true)
		err = c.hub.rooms.Sync(ctx, c, msg, access == AccessRead)
		c.delivering.Store(false)
		if err != nil {
			c.close(wire.CloseGoingAway, "server shutting down")
			return fmt.Errorf("deliver to room: %w", err)
		}
	case wire.TypeEphemeral:
		ok, flooding := c.ephemeral.allow(time.Now())
		if flooding {
			c.hub.cfg.Metrics.Limited(LimitEphemeralFlood)
			c.Fail(wire.ClosePolicyViolation, "ephemeral messages far over the rate limit")
			return errors.New("ephemeral flood")
		}
		if !ok {
			c.hub.cfg.Metrics.Limited(LimitEphemeralRate)
			return nil
		}
		c.relay(msg)
	default:
		// doc-unavailable from a client, remote-* gossip (the official
		// server does not enable it either), legacy leave, and types this
		// server does not know: ignored, as the protocol requires.
	}
	return nil
}

func (c *Conn) join(msg wire.Message) error {
	if msg.SenderID == "" {
		c.Fail(wire.CloseProtocolError, "join without senderId")
		return errors.New("join without senderId")
	}
	if msg.SupportedProtocolVersions != nil && !slices.Contains(msg.SupportedProtocolVersions, wire.ProtocolVersion) {
		c.peerID.Store(msg.SenderID)
		c.Fail(wire.CloseProtocolError, "unsupported protocol version")
		return fmt.Errorf("unsupported protocol versions %q", msg.SupportedProtocolVersions)
	}
	c.peerID.Store(msg.SenderID)
	if msg.PeerMetadata != nil {
		c.meta = *msg.PeerMetadata
	}
	old, ok := c.hub.register(c)
	if !ok {
		c.Fail(wire.ClosePeerIDInUse, "peer ID in use by another principal's connection")
		return fmt.Errorf("peer ID %s in use by another principal", msg.SenderID)
	}
	if old != nil {
		old.close(wire.CloseReplaced, "replaced by a newer connection with the same peer ID")
	}
	c.Send(wire.Message{
		Type:                    wire.TypePeer,
		PeerMetadata:            &wire.PeerMetadata{StorageID: c.hub.cfg.StorageID},
		SelectedProtocolVersion: wire.ProtocolVersion,
	})
	c.log.Debug("peer joined", "peer", string(msg.SenderID), "storage_id", c.meta.StorageID, "ephemeral", c.meta.IsEphemeral)
	return nil
}

// relay forwards an ephemeral message to the document's other peers,
// unchanged but for its target, once per (sender, session, count).
func (c *Conn) relay(msg wire.Message) {
	id, err := wire.ParseDocID(string(msg.DocumentID))
	if err != nil {
		c.sendError(fmt.Sprintf("ephemeral for document %q: %v", wire.Excerpt(string(msg.DocumentID)), err))
		return
	}
	msg.DocumentID = id
	if c.sess.access(id) == AccessNone {
		return
	}
	if !c.hub.seen.fresh(msg) {
		return
	}
	c.hub.sendEphemeral(msg)
	if r := c.hub.cfg.Relay; r != nil {
		r.Ephemeral(msg)
	}
}

func (c *Conn) leaveRooms() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := range c.docs {
		c.hub.rooms.Leave(ctx, id, c)
	}
}

// metricType bounds the message type label to the protocol's types.
func metricType(t string) string {
	switch t {
	case wire.TypeJoin, wire.TypeSync, wire.TypeRequest, wire.TypeDocUnavailable, wire.TypeEphemeral,
		wire.TypeRemoteSubscriptionChange, wire.TypeRemoteHeadsChanged, wire.TypeError, wire.TypePeer:
		return t
	case "":
		return "malformed"
	}
	return "other"
}

var _ room.Peer = (*Conn)(nil)
