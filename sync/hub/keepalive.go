package hub

import (
	"context"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// A stock client applies a sync message in one call on its event loop,
// and cannot answer pings meanwhile: a fresh Node client took 12 s over the
// one 5.5 MB message of the 5 MB text (docs/BENCHMARKS.md), 2.2 s per MiB,
// and was sometimes closed for it. After writing a message of at least
// pongGraceMinBytes, a missing pong is forgiven for pongGracePerMiB per
// MiB of it (twice that rate), counted from the write.
const (
	pongGraceMinBytes = 256 << 10
	pongGracePerMiB   = 4 * time.Second
)

// keepAlive pings every connection every PingInterval, from one loop for
// the whole hub (a connection costs no timer or goroutine of its own while
// idle). Each ping waits for its pong on a short-lived goroutine; a peer
// whose pong is later than PongTimeout is closed with CloseDeadPeer, unless
// it is visibly alive: it sent a frame since the ping, or its reader is
// waiting to hand a message to a busy room (and so cannot read the pong),
// or it may still be applying a large message we sent it.
func (h *Hub) keepAlive() {
	defer close(h.done)
	if h.cfg.PingInterval < 0 {
		<-h.stop
		return
	}
	tick := time.NewTicker(h.cfg.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		h.mu.Lock()
		conns := make([]*Conn, 0, len(h.all))
		for c := range h.all {
			conns = append(conns, c)
		}
		h.mu.Unlock()
		for _, c := range conns {
			go c.ping(h.cfg.PongTimeout)
		}
	}
}

// ping pings the peer once and closes the connection if it looks dead.
func (c *Conn) ping(timeout time.Duration) {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := c.t.Ping(ctx) // a closed transport answers at once
	if err == nil || ctx.Err() == nil {
		return // answered, or the connection is ending anyway
	}
	select {
	case <-c.closed:
		return
	default:
	}
	if c.delivering.Load() || c.lastFrame.Load() > sent.UnixNano() {
		return // alive: its reader is busy, or it spoke meanwhile
	}
	if time.Now().UnixNano() < c.applyingUntil.Load() {
		return // it may be busy with what we sent it
	}
	c.log.Info("peer did not answer ping, closing", "peer", string(c.ID()), "timeout", timeout)
	c.close(wire.CloseDeadPeer, "no pong")
}
