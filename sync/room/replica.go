package room

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Replicator connects the rooms of nodes that share one store, so that a
// document hosted on several nodes stays one document (sync/cluster
// implements it over NATS). A registry with a Replicator calls it from its
// rooms' goroutines; its methods must not block for long.
//
// A Replicator needs a store that implements LogStore: rooms follow the
// store's change log by position, and catch up from it.
type Replicator interface {
	// Follow is called when a room for id starts, before it loads the
	// document. From then until Unfollow, the replicator hands other
	// nodes' changes and deletes of the document to Registry.Remote and
	// Registry.RemoteDeleted.
	Follow(id wire.DocID)
	// Unfollow is called when the room for id stops.
	Unfollow(id wire.DocID)
	// Committed is called once changes of the document are durable (the
	// store's append returned), before any peer is told of them. The
	// append gave the new ones the log positions first..last (first > last
	// when every change was logged already). It must not retain changes.
	Committed(id wire.DocID, changes []core.Change, first, last int64)
	// Deleted is called once the document was deleted from the store.
	Deleted(id wire.DocID)
}

// LogStore is a Store whose change log can be followed by position, which
// rooms of a cluster need (Config.Replicator). docstore/postgres is one.
type LogStore interface {
	Store
	// AppendLogged is Append that also reports the first log position it
	// gave a new change; first is last+1 when every change was logged
	// already. The new changes have the positions first..last, with no
	// other document's changes between.
	AppendLogged(ctx context.Context, id wire.DocID, changes []core.Change) (first, last int64, err error)
	// ChangesAfter returns the document's log entries after position
	// after, in order, with LastSeq the position of the last one (or the
	// store's last position when there are none). When compaction deleted
	// some of them, Snapshot holds the snapshot that covers them and
	// Changes the entries after the snapshot. It returns ErrNotFound for
	// a document the store does not have.
	ChangesAfter(ctx context.Context, id wire.DocID, after int64) (StoredDoc, error)
}

// ErrCompactionBusy is returned by CompactionLocker.LockCompaction while
// another node compacts the document.
var ErrCompactionBusy = errors.New("another node is compacting the document")

// CompactionLocker is a Store shared by several nodes that lets one node
// at a time compact a document, so that a document hosted on several
// nodes is compacted once (docstore/postgres implements it with an
// advisory lock). A room of a cluster (Config.Replicator) uses it when its
// store implements it.
type CompactionLocker interface {
	// LockCompaction takes the document's compaction lock, or fails with
	// ErrCompactionBusy when another node holds it.
	LockCompaction(ctx context.Context, id wire.DocID) (CompactionLock, error)
}

// CompactionLock is a held compaction lock on one document.
type CompactionLock interface {
	// SnapshotSeq is the log position the stored snapshot covers, as read
	// under the lock: a room that has no more than that has nothing to
	// compact.
	SnapshotSeq() int64
	// Compact is Store.Compact under the lock.
	Compact(ctx context.Context, snapshot []byte, heads []core.Hash, throughSeq int64) error
	// Unlock releases the lock.
	Unlock()
}

// logPos tracks which of a document's log positions the room holds: every
// entry up to done, and the spans in ahead (sorted, disjoint, above
// done+1), which arrived before the entries between.
type logPos struct {
	done  int64
	ahead []span
}

type span struct{ first, last int64 }

// add records that the room holds the entries first..last (none when
// first > last).
func (p *logPos) add(first, last int64) {
	if first > last || last <= p.done {
		return
	}
	first = max(first, p.done+1)
	i, _ := slices.BinarySearchFunc(p.ahead, first, func(s span, f int64) int { return int(s.first - f) })
	p.ahead = slices.Insert(p.ahead, i, span{first, last})
	merged := p.ahead[:0]
	for _, s := range p.ahead {
		if n := len(merged); n > 0 && s.first <= merged[n-1].last+1 {
			merged[n-1].last = max(merged[n-1].last, s.last)
			continue
		}
		merged = append(merged, s)
	}
	p.ahead = merged
	for len(p.ahead) > 0 && p.ahead[0].first <= p.done+1 {
		p.done = max(p.done, p.ahead[0].last)
		p.ahead = p.ahead[1:]
	}
}

// gap reports whether entries are missing below ones the room holds.
func (p *logPos) gap() bool { return len(p.ahead) > 0 }

// onlyFollowing reports whether a batch only followed other nodes (their
// changes, deletes, catch-ups): no work for this node's peers.
func onlyFollowing(batch []envelope) bool {
	for _, env := range batch {
		switch env.kind {
		case kindRemote, kindRemoteDelete, kindCatchUp:
		default:
			return false
		}
	}
	return true
}

// remoteSource identifies changes from other nodes among the document's
// held changes (core.Doc.ReceiveChanges's from).
type remoteSource struct{}

// remoteBatch bounds the changes applied in one ReceiveChanges call when
// catching up, to stay within the document's per-message op limit.
const remoteBatch = 64

// remote applies changes another node made durable at log positions
// first..last: into the document and the graph, not into the store, which
// has them. Every peer is sent what it lacks in this turn.
func (r *Room) remote(env envelope) {
	if r.applyRemote(env.changes) || env.last > 0 {
		r.stored = true
	}
	r.pos.add(env.first, env.last)
	r.lastSeq = r.pos.done
}

// applyRemote applies durable changes from other nodes and reports whether
// it applied any. Changes the document has already are skipped; those
// whose dependencies have not arrived are held by the document.
func (r *Room) applyRemote(raws [][]byte) bool {
	var applied []core.Change
	for chunk := range slices.Chunk(raws, remoteBatch) {
		got, err := r.doc.ReceiveChanges(chunk, remoteSource{})
		if err != nil && len(chunk) > 1 {
			// One change at a time, so that one refused change (a node
			// with other limits, say) does not hold back the rest.
			for _, raw := range chunk {
				one, err := r.doc.ReceiveChanges([][]byte{raw}, remoteSource{})
				if err != nil {
					r.log.Error("change from another node refused", "err", err)
				}
				got = append(got, one...)
			}
		} else if err != nil {
			r.log.Error("change from another node refused", "err", err)
		}
		applied = append(applied, got...)
	}
	if len(applied) == 0 {
		return false
	}
	if err := r.addToGraph(applied); err != nil {
		r.repairGraph(err)
	}
	for _, ps := range r.peers {
		ps.dirty = true
	}
	return true
}

// catchUp reads the log entries after the room's position from the store
// and applies them: after a gap in what other nodes published, or when
// the replicator may have missed messages (Registry.CatchUp). A document
// the store no longer has was deleted on another node.
func (r *Room) catchUp(ctx context.Context) {
	ls, ok := r.reg.store.(LogStore)
	if !ok || r.cfg.Replicator == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	tail, err := ls.ChangesAfter(ctx, r.id, r.pos.done)
	if err == nil && tail.LastSeq < r.pos.done {
		// The log starts again below our position: the document was
		// deleted and created again meanwhile. Read all of it.
		tail, err = ls.ChangesAfter(ctx, r.id, 0)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		if r.stored {
			r.log.Info("document deleted on another node")
			r.dropDocument()
		}
		r.pos = logPos{}
		return
	case err != nil:
		r.log.Warn("cannot catch up from the store's log", "after_seq", r.pos.done, "err", err)
		return
	}
	changes := tail.Changes
	if tail.Snapshot != nil {
		// The entries were compacted: take the snapshot's changes, which
		// the document mostly has already.
		snap, err := core.Load(tail.Snapshot, nil)
		if err == nil {
			var all []core.Change
			all, err = snap.ChangesSince(nil)
			raws := make([][]byte, 0, len(all)+len(changes))
			for _, c := range all {
				raws = append(raws, c.Data)
			}
			changes = append(raws, changes...)
		}
		if err != nil {
			r.log.Error("cannot catch up from the stored snapshot", "err", fmt.Errorf("doc %s: %w", r.id, err))
			return
		}
	}
	before := r.pos.done
	if r.applyRemote(changes) || tail.LastSeq > 0 {
		r.stored = true
	}
	// The room now holds the whole log, up to the store's last position:
	// spans it noted beyond that are stale (from before a deletion).
	r.pos = logPos{done: tail.LastSeq}
	r.lastSeq = r.pos.done
	if r.pos.done > before {
		r.log.Debug("caught up from the store's log", "from_seq", before, "to_seq", r.pos.done, "from_snapshot", tail.Snapshot != nil)
	}
}

// Remote hands the document's room, if it is in memory, changes another
// node made durable at log positions first..last. They are applied in the
// room's turn and sent to its peers; they are not stored again. It blocks
// while the room's inbox is full.
func (g *Registry) Remote(ctx context.Context, id wire.DocID, changes [][]byte, first, last int64) error {
	return g.deliverExisting(ctx, id, envelope{kind: kindRemote, changes: changes, first: first, last: last})
}

// RemoteDeleted tells the document's room, if it is in memory, that
// another node deleted the document: its peers are told it is unavailable
// and leave the room, as with Delete.
func (g *Registry) RemoteDeleted(ctx context.Context, id wire.DocID) error {
	return g.deliverExisting(ctx, id, envelope{kind: kindRemoteDelete})
}

// CatchUp makes the document's room, if it is in memory, read what it
// lacks from the store's log: for a replicator that may have missed
// messages (a reconnect).
func (g *Registry) CatchUp(ctx context.Context, id wire.DocID) error {
	return g.deliverExisting(ctx, id, envelope{kind: kindCatchUp})
}

// deliverExisting puts env in the document's room's inbox if the room is
// in memory, and does nothing otherwise.
func (g *Registry) deliverExisting(ctx context.Context, id wire.DocID, env envelope) error {
	g.mu.Lock()
	r := g.rooms[id]
	if r != nil {
		r.refs++
	}
	g.mu.Unlock()
	if r == nil {
		return nil
	}
	defer g.release(r)
	return r.inbox.put(ctx, r.done, env)
}
