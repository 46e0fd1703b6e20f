package hub

import (
	"sync"

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
