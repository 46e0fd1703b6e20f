package room

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
)

// coreBudget keeps the Automerge core documents that rooms hold within
// Config.CoreMemory for the whole registry. A room materializes its document
// only for the HTTP API (Do); it then tells the budget (used), and when the
// cores held add up to more than the budget, the rooms whose cores were used
// longest ago are asked to release theirs (Room.releaseCore): their
// documents go back to being the validated changes the change graph also
// holds, and the next REST call materializes them again. A core is
// estimated at CoreBytesPerOp per op.
type coreBudget struct {
	limit uint64

	mu    sync.Mutex
	total uint64
	held  map[*Room]coreUse
}

// coreUse is one room's core: its estimated size and when it was last used.
type coreUse struct {
	bytes uint64
	last  time.Time
}

// CoreBytesPerOp is what the Automerge 0.5 core holds per op of a
// materialized document, about (measured on text and map histories).
const CoreBytesPerOp = 500

func newCoreBudget(limit int64) *coreBudget {
	return &coreBudget{limit: uint64(limit), held: make(map[*Room]coreUse)}
}

// used records that r holds a core of about the given size, used now, and
// returns the other rooms that must release theirs to keep within the
// budget, longest unused first; they are no longer counted. over reports
// that r's core alone is larger than the budget: r releases it itself once
// its operation is done.
func (b *coreBudget) used(r *Room, bytes uint64) (release []*Room, over bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= b.held[r].bytes
	b.held[r] = coreUse{bytes: bytes, last: time.Now()}
	b.total += bytes
	if b.total <= b.limit {
		return nil, false
	}
	type entry struct {
		r *Room
		u coreUse
	}
	var others []entry
	for o, u := range b.held {
		if o != r {
			others = append(others, entry{o, u})
		}
	}
	slices.SortFunc(others, func(a, b entry) int { return cmp.Compare(a.u.last.UnixNano(), b.u.last.UnixNano()) })
	for _, e := range others {
		if b.total <= b.limit {
			break
		}
		release = append(release, e.r)
		b.total -= e.u.bytes
		delete(b.held, e.r)
	}
	return release, b.total > b.limit
}

// released records that r holds no core any more.
func (b *coreBudget) released(r *Room) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total -= b.held[r].bytes
	delete(b.held, r)
}

// materialized is what a room does after its document was materialized for
// an operation: it tells the budget, asks the rooms whose cores must go to
// release them (in their own turns), and releases its own if that alone is
// over the budget.
func (r *Room) materialized() {
	release, over := r.reg.cores.used(r, r.graph.Graph().Ops()*CoreBytesPerOp)
	for _, o := range release {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StoreTimeout)
			defer cancel()
			_ = r.reg.deliverExisting(ctx, o.id, envelope{kind: kindRelease})
		}()
	}
	if over {
		r.releaseCore()
	}
}

// releaseCore drops the room's core document, if it holds one, keeping the
// document as its change graph's changes (core.Doc.Release).
func (r *Room) releaseCore() {
	defer r.reg.cores.released(r)
	if !r.doc.Materialized() {
		return
	}
	g := r.graph.Graph()
	history := make([]core.Change, 0, g.Len())
	for c := range g.Changes() {
		history = append(history, core.Change{Hash: c.Hash, Data: c.Raw})
	}
	heads := r.graph.Heads()
	if !r.doc.Release(history, heads) {
		r.log.Warn("core document kept: the change graph does not match it")
		return
	}
	r.log.Debug("core document released", "changes", len(history))
}
