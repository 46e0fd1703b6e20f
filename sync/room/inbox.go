package room

import (
	"context"
	"sync"
)

// inbox is a room's queue of unprocessed envelopes. Unlike a buffered
// channel it costs nothing while empty: it grows as messages arrive, up to
// limit, and lets go of its buffer once drained, so that the thousands of
// rooms a server holds (most of them idle, or waiting for a document that
// does not exist yet) cost a few hundred bytes each instead of a
// limit-sized buffer. A full inbox makes senders wait, which stops their
// connections from reading (the backpressure of docs/ARCHITECTURE.md).
type inbox struct {
	mu    sync.Mutex
	q     []envelope
	limit int
	// ready holds a token while q is not empty; the room's goroutine
	// selects on it.
	ready chan struct{}
	// space is closed when a full inbox frees room; nil while nobody
	// waits.
	space chan struct{}
	// running says the room's goroutine runs; while it does not (the room
	// is parked), put starts it with wake.
	running bool
	wake    func()
}

// keepCap is the largest buffer a drained inbox keeps.
const keepCap = 8

func newInbox(limit int) *inbox {
	return &inbox{limit: limit, ready: make(chan struct{}, 1), running: true}
}

// park marks the room's goroutine as ending, unless something is waiting;
// parked runs under the lock first (to arm what may wake the room, before
// anything can). It reports whether the goroutine must end.
func (b *inbox) park(parked func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.q) > 0 {
		return false
	}
	b.running = false
	parked()
	return true
}

// unpark marks a parked room's goroutine as running and reports whether
// the caller must start it (false: it runs already).
func (b *inbox) unpark() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running {
		return false
	}
	b.running = true
	return true
}

// put appends env, waiting while the inbox is full until there is room,
// done is closed (the room stopped: ErrClosed) or ctx ends.
func (b *inbox) put(ctx context.Context, done <-chan struct{}, env envelope) error {
	b.mu.Lock()
	for len(b.q) >= b.limit {
		if b.space == nil {
			b.space = make(chan struct{})
		}
		space := b.space
		b.mu.Unlock()
		select {
		case <-space:
		case <-done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	b.q = append(b.q, env)
	start := !b.running && b.wake != nil
	if start {
		b.running = true
	}
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
	if start {
		b.wake()
	}
	return nil
}

// take moves up to max envelopes to batch, without waiting, and returns it.
func (b *inbox) take(batch []envelope, max int) []envelope {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := min(len(b.q), max)
	if n == 0 {
		return batch
	}
	batch = append(batch, b.q[:n]...)
	rest := copy(b.q, b.q[n:])
	clear(b.q[rest:]) // drop the references the moved envelopes held
	b.q = b.q[:rest]
	if rest == 0 && cap(b.q) > keepCap {
		b.q = nil
	}
	if b.space != nil {
		close(b.space)
		b.space = nil
	}
	if rest > 0 {
		select {
		case b.ready <- struct{}{}:
		default:
		}
	}
	return batch
}

// len returns the number of envelopes waiting.
func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.q)
}
