package room

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// freeAfterBytes: after a compaction estimated to hold at least this much
// (CompactionBytes), the compactor returns the memory to the system.
const freeAfterBytes = 64 << 20

// compactor compacts documents off the rooms' turns, one at a time for the
// whole registry: it merges what the store holds for a document into one
// snapshot, in Go (core.Compact: the stored changes are not validated
// again, and no Automerge document is built), checks that the snapshot
// reads back as exactly those changes, and replaces the log with it
// (Store.Compact).
// A room's own document is never touched (a room that only relays changes
// never materializes its document), peers' messages are not delayed by
// it, and at most one extra copy of one document is in memory at a time.
//
// Working from the store makes a job safe whatever happens to the room
// meanwhile: appends after the load stay logged (Compact deletes only what
// the snapshot covers), and a document deleted meanwhile is not found.
type compactor struct {
	reg *Registry

	mu      sync.Mutex
	queue   []*Room
	queued  map[wire.DocID]uint64 // the queued jobs' memory estimates (CompactionBytes)
	running bool                  // a worker goroutine runs
	idle    chan struct{}         // closed when the queue empties with no worker; nil while one runs
}

// compaction is what a room hears back from the compactor: the snapshot
// (with its heads) and the log sequence it covers, or that another node
// of the cluster compacts the document, or why it failed.
type compaction struct {
	throughSeq int64
	logBytes   int64 // of the logged changes the snapshot took in
	snapshot   []byte
	heads      []core.Hash
	elsewhere  bool
	err        error
}

func newCompactor(g *Registry) *compactor {
	idle := make(chan struct{})
	close(idle)
	return &compactor{reg: g, queued: make(map[wire.DocID]uint64), idle: idle}
}

// enqueue asks for r's document to be compacted, once however often it is
// asked before the job starts; the result is left for the room in
// r.compacted. need is what the job is estimated to hold
// (CompactionBytes). It does not wait.
func (c *compactor) enqueue(r *Room, need uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.queued[r.id]; ok {
		return
	}
	c.queued[r.id] = need
	c.queue = append(c.queue, r)
	if !c.running {
		c.running = true
		c.idle = make(chan struct{})
		go c.work()
	}
}

// work runs jobs until the queue is empty.
func (c *compactor) work() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.running = false
			c.queue = nil
			close(c.idle)
			c.mu.Unlock()
			return
		}
		r := c.queue[0]
		c.queue = c.queue[1:]
		need := c.queued[r.id]
		delete(c.queued, r.id)
		c.mu.Unlock()

		res := c.compact(r)
		if res.err != nil && !errors.Is(res.err, ErrNotFound) {
			r.log.Error("compaction failed", "err", res.err)
		}
		r.compacted.Store(&res)
		if need >= freeAfterBytes {
			// A large compaction's heap is garbage now; the runtime
			// would keep it from the system for minutes.
			debug.FreeOSMemory()
		}
	}
}

// compact compacts what the store holds for r's document now. In a
// cluster (a Replicator, and a store that is a CompactionLocker) it holds
// the document's compaction lock throughout, and leaves the work to the
// node that holds it, or that has compacted as far already.
func (c *compactor) compact(r *Room) compaction {
	g := c.reg
	// Not the registry's context: a drain still compacts, within its own
	// deadline (Registry.Close waits for the queue).
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.StoreTimeout)
	defer cancel()
	start := time.Now()
	store := g.store.Compact
	var lock CompactionLock
	if cl, ok := g.store.(CompactionLocker); ok && g.cfg.Replicator != nil {
		var err error
		lock, err = cl.LockCompaction(ctx, r.id)
		if errors.Is(err, ErrCompactionBusy) {
			return compaction{elsewhere: true}
		}
		if err != nil {
			return compaction{err: fmt.Errorf("compact doc %s: %w", r.id, err)}
		}
		defer lock.Unlock()
		store = func(ctx context.Context, _ wire.DocID, snap []byte, heads []core.Hash, through int64) error {
			return lock.Compact(ctx, snap, heads, through)
		}
	}
	st, err := g.store.Load(ctx, r.id)
	if err != nil {
		return compaction{err: fmt.Errorf("compact doc %s: %w", r.id, err)}
	}
	if len(st.Changes) == 0 || (lock != nil && lock.SnapshotSeq() >= st.LastSeq) {
		return compaction{throughSeq: st.LastSeq, snapshot: st.Snapshot, heads: st.SnapshotHeads}
	}
	snap, heads, err := core.CompactPaced(st.Snapshot, st.Changes, c.pacer())
	if errors.Is(err, core.ErrCompactUnsure) {
		snap, heads, err = compactValidated(st)
	}
	if err != nil {
		return compaction{err: fmt.Errorf("compact doc %s: %w", r.id, err)}
	}
	if err := store(ctx, r.id, snap, heads, st.LastSeq); err != nil {
		return compaction{err: fmt.Errorf("compact doc %s: %w", r.id, err)}
	}
	r.log.Debug("compacted", "through_seq", st.LastSeq, "changes", len(st.Changes),
		"snapshot_bytes", len(snap), "took", time.Since(start))
	logBytes := int64(0)
	for _, c := range st.Changes {
		logBytes += int64(len(c))
	}
	return compaction{throughSeq: st.LastSeq, logBytes: logBytes, snapshot: snap, heads: heads}
}

// compactValidated compacts what Compact does not take (see
// core.ErrCompactUnsure): it decodes and validates the stored document as
// a room's load does, which keeps changes held for missing deps after the
// snapshot, and checks that the snapshot loads the same way.
func compactValidated(st StoredDoc) ([]byte, []core.Hash, error) {
	doc, err := core.Load(st.Snapshot, st.Changes)
	if err != nil {
		return nil, nil, fmt.Errorf("load: %w", err)
	}
	snap, heads := doc.Save(), doc.Heads()
	check, err := core.Load(snap, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot does not re-load: %w", err)
	}
	if !slices.Equal(check.Heads(), heads) {
		return nil, nil, errors.New("re-loaded snapshot has other heads")
	}
	return snap, heads, nil
}

// compactionSlice and compactionRest pace a compaction: it works a slice,
// then rests three times as long, so that it takes about a quarter of a
// core and leaves the rest of the machine to the rooms. Unpaced, a
// compaction of a long history (0.75 s of CPU for 100,000 changes, more
// under load) took a whole core at once, and on a two-core machine under
// load the rooms' fan-out stalled for seconds; at half a core it still
// did. Once the registry drains, compactions run at full speed (there are
// no peers to serve).
const (
	compactionSlice = 10 * time.Millisecond
	compactionRest  = 30 * time.Millisecond
)

// pacer returns the pace function of one compaction (core.CompactPaced).
func (c *compactor) pacer() func() {
	since := time.Now()
	return func() {
		if time.Since(since) < compactionSlice || c.reg.ctx.Err() != nil {
			return
		}
		time.Sleep(compactionRest)
		since = time.Now()
	}
}

// wait returns when the queue is empty and no job runs, or ctx ends.
func (c *compactor) wait(ctx context.Context) error {
	c.mu.Lock()
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("compactions: %w", ctx.Err())
	}
}
