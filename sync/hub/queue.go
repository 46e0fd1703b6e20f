package hub

import (
	"sync"

	"github.com/tandem-sync/tandem/sync/wire"
)

// outItem is a message to write, or the instruction to close after what
// was queued before it has been written.
type outItem struct {
	msg    wire.Message
	close  bool
	code   wire.CloseCode
	reason string
}

// size is what the item counts against the queue's byte bound: its
// payload plus a flat allowance for the message's envelope.
func (it outItem) size() int64 {
	return int64(len(it.msg.Data)+len(it.msg.ErrorMessage)) + 128
}

// pushResult says what push did with an item.
type pushResult int

const (
	pushed   pushResult = iota
	dropped             // an ephemeral message the backed-up queue refused
	overflow            // the queue is over its bound: the peer is too slow
	shut                // the queue is closed
)

// outQueue is a connection's outbound queue: first in, first out, bounded
// in bytes, not messages. Its slice grows with what is queued and is let go
// once the queue drains, so an idle connection holds no buffer; no goroutine
// waits on it either: push starts a writer when there is something to write
// and the writer ends when the queue is empty.
type outQueue struct {
	mu      sync.Mutex
	items   []outItem
	bytes   int64
	max     int64
	closed  bool
	writing chan struct{} // non-nil while a writer runs; closed when it ends
}

// push appends it, starting a writer with start if none runs. A message
// larger than the whole bound is still taken when the queue is empty (one
// big sync message must get through); ephemeral messages, which are lossy by
// nature, are dropped instead of overflowing once the queue is half full, so
// that presence traffic never gets a peer disconnected.
func (q *outQueue) push(it outItem, start func()) pushResult {
	n := it.size()
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return shut
	case it.msg.Type == wire.TypeEphemeral && q.bytes+n > q.max/2:
		return dropped
	case q.bytes > 0 && q.bytes+n > q.max && !it.close:
		return overflow
	}
	q.items = append(q.items, it)
	q.bytes += n
	if q.writing == nil {
		q.writing = make(chan struct{})
		go start()
	}
	return pushed
}

// pop takes the oldest item. When the queue is empty it reports false and
// marks the writer as ended: the caller must return.
func (q *outQueue) pop() (outItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 || q.closed {
		q.items, q.bytes = nil, 0 // give the memory back
		if q.writing != nil {
			close(q.writing)
			q.writing = nil
		}
		return outItem{}, false
	}
	it := q.items[0]
	q.items[0] = outItem{}
	q.items = q.items[1:]
	q.bytes -= it.size()
	return it, true
}

// shut closes the queue: nothing more is taken, and what is queued is
// dropped at the writer's next pop.
func (q *outQueue) shut() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
}

// writer returns a channel closed when the running writer ends, or nil if
// none runs.
func (q *outQueue) writer() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.writing
}

// queued returns the bytes waiting.
func (q *outQueue) queued() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.bytes
}
