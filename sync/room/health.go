package room

import (
	"log/slog"
	"sync"
	"time"
)

// storeHealth tracks whether the store accepts writes, across all rooms, so
// that an outage is logged once when it starts and once when it ends, not
// once per change, and so that readiness can report it.
type storeHealth struct {
	log *slog.Logger

	mu      sync.Mutex
	failing bool
	since   time.Time
	fails   int
}

func (h *storeHealth) failed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails++
	if h.failing {
		return
	}
	h.failing, h.since = true, time.Now()
	h.log.Error("store unavailable: holding changes in memory, not advertising them until they are stored", "err", err)
}

func (h *storeHealth) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failing {
		return
	}
	h.log.Info("store recovered", "outage", time.Since(h.since).Round(time.Millisecond), "failed_writes", h.fails)
	h.failing, h.fails = false, 0
}

func (h *storeHealth) healthy() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.failing
}
