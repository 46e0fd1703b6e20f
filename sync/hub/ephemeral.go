package hub

import (
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// ephemeralSeen deduplicates ephemeral messages: it remembers the highest
// count seen per (sender, session), as automerge-repo's NetworkSubsystem
// does, and drops any message whose count is not greater. The table is
// bounded: past maxEntries it starts again from empty, which at worst lets
// one stale duplicate per session through.
type ephemeralSeen struct {
	mu         sync.Mutex
	maxEntries int
	counts     map[ephemeralKey]uint64
}

type ephemeralKey struct {
	sender  wire.PeerID
	session string
}

func newEphemeralSeen(maxEntries int) *ephemeralSeen {
	return &ephemeralSeen{maxEntries: maxEntries, counts: make(map[ephemeralKey]uint64)}
}

// fresh reports whether msg has not been seen before, and records it.
func (e *ephemeralSeen) fresh(msg wire.Message) bool {
	k := ephemeralKey{sender: msg.SenderID, session: msg.SessionID}
	e.mu.Lock()
	defer e.mu.Unlock()
	if last, ok := e.counts[k]; ok && msg.Count <= last {
		return false
	}
	if len(e.counts) >= e.maxEntries {
		clear(e.counts)
	}
	e.counts[k] = msg.Count
	return true
}

// ephemeralLimit is one connection's token bucket for the ephemeral
// messages it sends: rate per second, up to burst at once. It is owned by
// the connection's reader goroutine.
type ephemeralLimit struct {
	rate, burst float64
	tokens      float64
	last        time.Time
	// debt grows by one for every message dropped and shrinks by one for
	// every message let through; past floodDebt the sender is not bursting
	// but flooding, and is disconnected.
	debt int
}

// floodDebt returns how many more messages than it let through a connection
// may have had dropped before it counts as a flooder: five bursts' worth.
func (l *ephemeralLimit) floodDebt() int { return 5 * int(l.burst) }

// allow reports whether a message sent at now fits the rate, and whether
// the connection is flooding.
func (l *ephemeralLimit) allow(now time.Time) (ok, flooding bool) {
	if l.last.IsZero() {
		l.tokens = l.burst
	} else {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		l.debt = max(0, l.debt-1)
		return true, false
	}
	l.debt++
	return false, l.debt > l.floodDebt()
}

// Relay carries ephemeral messages to the other nodes of a cluster
// (sync/cluster implements it).
type Relay interface {
	// Ephemeral is called with each ephemeral message a peer of this node
	// sent, once relayed to this node's peers. It must not block.
	Ephemeral(msg wire.Message)
}

// RelayEphemeral sends an ephemeral message from a peer of another node to
// the document's peers on this node, once per (sender, session, count),
// as if one of them had sent it.
func (h *Hub) RelayEphemeral(msg wire.Message) {
	if !h.seen.fresh(msg) {
		return
	}
	h.sendEphemeral(msg)
}

// sendEphemeral sends msg to the document's peers here, but its sender.
func (h *Hub) sendEphemeral(msg wire.Message) {
	for _, p := range h.rooms.Peers(msg.DocumentID) {
		if p.ID() != msg.SenderID {
			p.Send(msg)
		}
	}
}
