package room

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/engine"
	"github.com/tandem-sync/tandem/sync/wire"
)

type envelopeKind int

const (
	kindSync envelopeKind = iota
	kindLeave
	kindDo
	kindPeek
	kindDelete
	kindRemote       // another node's durable changes (replica.go)
	kindRemoteDelete // another node deleted the document
	kindCatchUp      // read what the room lacks from the store's log
	kindRelease      // drop the core document (cores.go)
)

// envelope is one item of a room's inbox.
type envelope struct {
	kind     envelopeKind
	peer     Peer
	msg      wire.Message
	readOnly bool // kindSync: the peer may not change the document
	do       func(doc *core.Doc, exists bool) error
	reply    chan error // kindDo, kindPeek, kindDelete: buffered, answered once
	// kindRemote: the changes and the log positions first..last they
	// were given.
	changes     [][]byte
	first, last int64
}

// peerState is what a room keeps per peer: its sync state (sync/engine's,
// over the room's graph) and whether it asked for the document with a
// request that could not be served yet.
type peerState struct {
	sync *engine.SyncState
	// dirty: the peer sent something this turn and gets a reply.
	dirty bool
	// wants: the peer sent a request while the document did not exist;
	// it is told doc-unavailable once, at unavailableAt (the grace in
	// which another peer may bring the document; zero: at once), and
	// stays in the room so that it receives the document when it appears.
	wants         bool
	notified      bool
	unavailableAt time.Time
	// warned: a read-only peer was told once that its changes are dropped.
	warned bool
	// readOnly: the peer may not change the document. flags: its messages
	// carry a flags trailer, so its core understands FlagReadOnly; such a
	// read-only peer is told it is read-only in every message it is sent
	// (toldReadOnly), and stops sending changes.
	readOnly, flags, toldReadOnly bool
}

// Room hosts one document in memory. A single goroutine (run) owns the
// document and every peer's sync state; everything else talks to it through
// its inbox. It works in turns: apply everything queued, make new changes
// durable, then generate and send sync messages. See "A room's turn" in
// docs/ARCHITECTURE.md.
type Room struct {
	id  wire.DocID
	reg *Registry
	cfg Config
	log *slog.Logger

	inbox *inbox
	done  chan struct{}
	refs  int // guarded by reg.mu

	// peerList is a copy of the peer set for the ephemeral relay, which
	// reads it from connection goroutines.
	peerList atomic.Pointer[[]Peer]

	// Owned by the run goroutine. doc validates every change and
	// materializes the document (REST reads and edits, compaction); graph
	// holds the same changes as a change graph, over which the peers' sync
	// states run (sync/engine). Every change applied to doc is added to
	// graph in the same turn; changes held for their dependencies are held
	// by doc only (graph asks for them through HeldOutside).
	doc      *core.Doc
	graph    *engine.Document
	stored   bool // the store has this document
	peers    map[Peer]*peerState
	pending  []core.Change // applied to doc, not yet durable
	pendingB int64         // bytes in pending
	lastSeq  int64         // log sequence up to which the room holds every logged change
	pos      logPos        // which log positions the room holds (replica.go)
	snapSeq  int64         // log sequence the snapshot covers
	logBytes int64         // bytes appended since the snapshot (approximate)
	snapSize int64
	retry    time.Duration
	// waiters are Do calls whose changes are not durable yet; they are
	// answered after the flush that stores them.
	waiters []chan error
	// backlog holds inbox messages of a turn that stopped early because the
	// store failed; the next turn starts with them.
	backlog []envelope
	// runCtx is the context of the current turn's store calls.
	runCtx context.Context
	// lastTurn is when the room last did anything for this node (turns
	// that only followed other nodes do not count); idle is the timer
	// that evicts a parked room without peers (nil while it runs).
	lastTurn time.Time
	idle     *time.Timer
	// compacting says a compaction job is queued or running; its answer
	// arrives in compacted (set by the compactor's goroutine). After a
	// failure the room asks again no sooner than compactAfter.
	compacting   bool
	compacted    atomic.Pointer[compaction]
	compactAfter time.Time
	overBudget   bool // the document was found too large to compact (logged once)
	// unavailableDue is the earliest unavailableAt of a peer still waiting
	// to be told doc-unavailable; zero when none waits. Deadlines are set
	// in arrival order with the same grace, so a later one is never
	// earlier.
	unavailableDue time.Time
}

func newRoom(id wire.DocID, g *Registry) *Room {
	r := &Room{
		id:    id,
		reg:   g,
		cfg:   g.cfg,
		log:   g.cfg.Logger.With("doc", string(id)),
		inbox: newInbox(g.cfg.InboxSize),
		done:  make(chan struct{}),
		peers: make(map[Peer]*peerState),
	}
	r.inbox.wake = func() { go r.resume(false) }
	return r
}

// run is a room's first stretch of work: it loads the document, then
// serves the inbox until the room goes quiet (see serve).
func (r *Room) run(ctx context.Context) {
	r.cfg.Metrics.RoomOpened()
	if rep := r.cfg.Replicator; rep != nil {
		// Before the load, so that no change published after it is
		// missed; Unfollow is in end.
		rep.Follow(r.id)
	}
	if err := r.load(ctx); err != nil {
		r.failLoad(err)
		r.end()
		return
	}
	r.serve(ctx, false)
}

// end marks the room stopped: senders get ErrClosed, the registry's drain
// stops waiting for it.
func (r *Room) end() {
	if rep := r.cfg.Replicator; rep != nil {
		rep.Unfollow(r.id)
	}
	r.reg.cores.released(r)
	close(r.done)
	r.cfg.Metrics.RoomClosed()
	r.reg.wg.Done()
}

// serve runs turns until the room is quiet, is evicted, or the registry
// closes. A quiet room (its inbox empty, nothing waiting to be stored,
// nobody waiting for doc-unavailable) parks: its goroutine ends, and the
// inbox starts a new one when a message arrives (inbox.put), as does the
// idle timer of a room without peers (wakeIdle) and the registry's drain
// (Registry.Close). A parked room costs its memory and no goroutine or,
// while it has peers, timer. idleCheck says the idle timer woke it.
func (r *Room) serve(ctx context.Context, idleCheck bool) {
	if idleCheck && len(r.peers) == 0 && ctx.Err() == nil && time.Since(r.lastTurn) >= r.cfg.IdleTimeout && r.evict(ctx) {
		r.end()
		return
	}
	var retry <-chan time.Time
	// grace fires when requesters of a missing document are due their
	// doc-unavailable; graceC is nil while it is not armed.
	var grace *time.Timer
	var graceC <-chan time.Time
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	// gapC fires when log entries another node published have been
	// missing for CatchUpDelay: the room reads them from the store.
	var gapC <-chan time.Time
	// following: the turn only followed other nodes, which does not keep
	// an idle room in memory (lastTurn).
	var following bool
	var batch []envelope
	for {
		if retry == nil && graceC == nil && gapC == nil && len(r.backlog) == 0 && ctx.Err() == nil && r.inbox.park(r.parked) {
			return
		}
		// While too much is waiting to be stored, or a turn stopped early,
		// take nothing more: the inbox fills and the peers' connections stop
		// being read, so nothing is dropped and memory stays bounded.
		ready := r.inbox.ready
		if r.pendingB >= r.cfg.MaxPendingBytes || len(r.backlog) > 0 {
			ready = nil
		}
		select {
		case <-ready:
			batch = r.inbox.take(batch[:0], r.cfg.MaxBatch)
			if len(batch) > 0 {
				r.turn(ctx, batch)
			}
			following = onlyFollowing(batch)
			clear(batch) // the envelopes' messages are garbage now
			if cap(batch) > keepCap {
				batch = nil
			}
		case <-retry:
			retry = nil
			r.turn(ctx, nil)
		case <-graceC:
			graceC = nil
			r.answerUnavailable(time.Now())
		case <-gapC:
			gapC = nil
			if r.pos.gap() {
				r.turn(ctx, []envelope{{kind: kindCatchUp}})
			}
			following = true
		case <-ctx.Done():
			r.drain()
			r.end()
			return
		}
		if !following {
			r.lastTurn = time.Now()
		}
		following = false
		if (len(r.pending) > 0 || len(r.backlog) > 0) && retry == nil {
			retry = time.After(max(r.retry, r.cfg.RetryBackoff))
		}
		if graceC == nil && !r.unavailableDue.IsZero() {
			if grace == nil {
				grace = time.NewTimer(time.Until(r.unavailableDue))
			} else {
				grace.Reset(time.Until(r.unavailableDue))
			}
			graceC = grace.C
		}
		if gapC == nil && r.pos.gap() {
			gapC = time.After(r.cfg.CatchUpDelay)
		}
	}
}

// parked arms the idle timer of a room that parks without peers, for
// what remains of the idle timeout since its last turn for this node.
func (r *Room) parked() {
	if len(r.peers) == 0 {
		r.idle = time.AfterFunc(max(0, r.cfg.IdleTimeout-time.Since(r.lastTurn)), r.wakeIdle)
	}
}

// resume starts a parked room's goroutine (the inbox calls it when a
// message arrives, Registry.Close to drain it).
func (r *Room) resume(idleCheck bool) {
	if r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	r.serve(r.reg.ctx, idleCheck)
}

// wakeIdle is the idle timer of a parked room without peers: unless a
// message woke it meanwhile, the room resumes to see whether it can be
// evicted.
func (r *Room) wakeIdle() {
	if r.inbox.unpark() {
		go r.resume(true)
	}
}

// load reads the document from the store. A missing document is an empty
// one that the store does not have yet.
func (r *Room) load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	st, err := r.reg.store.Load(ctx, r.id)
	switch {
	case errors.Is(err, ErrNotFound):
		r.setDoc(core.NewDocWith(r.cfg.Limits))
		return nil
	case err != nil:
		return fmt.Errorf("load doc %s: %w", r.id, err)
	}
	doc, err := core.Load(st.Snapshot, st.Changes)
	if err != nil {
		return fmt.Errorf("load doc %s: %w", r.id, err)
	}
	doc.SetLimits(r.cfg.Limits) // what was stored loads within the defaults
	if len(st.Changes) == 0 && len(st.Snapshot) > 0 && !slices.Equal(doc.Heads(), st.SnapshotHeads) {
		// The snapshot is not the one compaction recorded: refuse it
		// rather than serve (and later compact over) other content.
		return fmt.Errorf("load doc %s: snapshot heads differ from those recorded with it", r.id)
	}
	r.setDoc(doc)
	if err := r.fillGraph(); err != nil {
		return fmt.Errorf("load doc %s: %w", r.id, err)
	}
	r.useSnapshot(st.Snapshot)
	r.stored = true
	r.lastSeq = st.LastSeq
	r.pos = logPos{done: st.LastSeq}
	r.snapSeq = st.LastSeq - int64(len(st.Changes))
	r.snapSize = int64(len(st.Snapshot))
	for _, c := range st.Changes {
		r.logBytes += int64(len(c))
	}
	return nil
}

// useSnapshot hands the store's snapshot (a document chunk, which covers
// the graph's changes up to its heads) to the graph, for the whole-document
// sync of peers that have nothing (see "Initial sync" in
// docs/ARCHITECTURE.md). One it cannot use only costs that: such peers are
// sent the changes.
func (r *Room) useSnapshot(snap []byte) {
	if len(snap) == 0 {
		return
	}
	if err := r.graph.SetSnapshot(snap); err != nil {
		r.log.Warn("snapshot not usable for whole-document sync", "err", err)
	}
}

// snapshotCovered reports whether the graph has every head of a snapshot
// the compactor saved from the store (in a cluster, the store may hold
// changes of other nodes that this room has not applied yet; such a
// snapshot waits for the next compaction).
func (r *Room) snapshotCovered(heads []core.Hash) bool {
	g := r.graph.Graph()
	for _, h := range heads {
		if !g.Has(engine.Hash(h)) {
			return false
		}
	}
	return len(heads) > 0
}

// setDoc makes doc the room's document, with an empty graph beside it.
func (r *Room) setDoc(doc *core.Doc) {
	if r.doc != nil {
		r.reg.cores.released(r)
	}
	r.doc = doc
	r.graph = engine.NewDocument(engine.Options{HeldOutside: doc})
}

// fillGraph adds to the graph the changes of the document it lacks, in
// causal order: at load the whole history, after an edit its changes.
func (r *Room) fillGraph() error {
	changes, err := r.doc.ChangesSince(r.graph.Heads())
	if err != nil {
		return fmt.Errorf("changes for the sync graph: %w", err)
	}
	return r.addToGraph(changes)
}

// addToGraph adds changes the document applied to the graph, in causal
// order. The graph keeps their bytes.
func (r *Room) addToGraph(changes []core.Change) error {
	g := r.graph.Graph()
	for _, c := range changes {
		ec, err := engine.ParseChange(c.Data)
		if err == nil && ec.Hash != c.Hash {
			err = fmt.Errorf("hash %x where the document has %x", ec.Hash[:4], c.Hash[:4])
		}
		if err == nil {
			_, err = g.Add(ec)
		}
		if err != nil {
			return fmt.Errorf("add change %x to the sync graph: %w", c.Hash[:4], err)
		}
	}
	return nil
}

// repairGraph rebuilds the graph from the document after they were found
// to disagree (a change the document applied that the graph refused).
// Peers' sync states refer to the graph's changes by position, so they
// start afresh.
func (r *Room) repairGraph(cause error) {
	r.log.Error("sync graph disagrees with the document; rebuilding it", "err", cause)
	snap, _ := r.graph.Snapshot()
	r.graph = engine.NewDocument(engine.Options{HeldOutside: r.doc})
	if err := r.fillGraph(); err != nil {
		r.log.Error("sync graph rebuild failed", "err", err)
	}
	r.useSnapshot(snap)
	for _, ps := range r.peers {
		ps.sync = engine.NewSyncState()
		ps.sync.SetReadOnly(ps.readOnly)
		ps.dirty = true
	}
}

// failLoad forgets the room at once (a failed load is never cached) and
// disconnects every peer that was waiting for it, so that they retry.
func (r *Room) failLoad(err error) {
	r.log.Error("room load failed", "err", err)
	r.reg.forget(r)
	for {
		for _, env := range r.inbox.take(nil, r.cfg.InboxSize) {
			switch env.kind {
			case kindSync:
				env.peer.Fail(wire.CloseTryAgainLater, "document could not be loaded; try again later")
			case kindDo, kindPeek, kindDelete:
				env.reply <- fmt.Errorf("doc %s: %w", r.id, ErrUnavailable)
			}
		}
		if r.reg.unused(r) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// turn applies a batch of inbox messages, makes new changes durable, and
// only then sends sync messages.
func (r *Room) turn(ctx context.Context, batch []envelope) {
	r.runCtx = ctx
	r.tookCompaction() // a new snapshot serves this turn's whole-document syncs
	if len(r.backlog) > 0 {
		batch = append(r.backlog, batch...)
		r.backlog = nil
	}
	// brought: peers whose messages in this turn brought new changes.
	brought := map[Peer]bool{}
	for i, env := range batch {
		if env.kind == kindSync && brought[env.peer] {
			// This peer's next message must not be applied before it has
			// been told the changes it brought: its heads would match ours
			// and the core would count them as told (the "ack rule").
			// End the turn here, and go on after.
			if !r.settle() {
				r.backlog = append(r.backlog[:0], batch[i:]...)
				return
			}
			clear(brought)
		}
		switch env.kind {
		case kindLeave:
			r.saveSyncState(ctx, env.peer)
			r.removePeer(env.peer)
		case kindSync:
			n := len(r.pending)
			r.receive(env.peer, env.msg, env.readOnly)
			if len(r.pending) > n {
				brought[env.peer] = true
			}
		case kindDo:
			r.do(env)
		case kindPeek:
			env.reply <- env.do(r.doc, r.exists())
		case kindDelete:
			r.delete(ctx, env)
		case kindRemote:
			r.remote(env)
		case kindRemoteDelete:
			if r.exists() {
				r.log.Info("document deleted on another node")
				r.dropDocument()
			}
		case kindCatchUp:
			r.catchUp(ctx)
		case kindRelease:
			r.releaseCore()
		}
	}
	if !r.settle() {
		return
	}
	// Take in a finished compaction first: with the snapshot sequence it
	// had before, the log looks long, and a compaction just done was
	// followed by another of the few changes since.
	r.tookCompaction()
	logged := r.lastSeq - r.snapSeq
	if logged*compactShare >= r.lastSeq &&
		(logged >= r.cfg.CompactChanges || (r.logBytes >= r.cfg.CompactBytes && r.logBytes > r.snapSize)) {
		r.compact(false)
	}
}

// compactShare: a document is compacted only once its log holds at least
// 1/compactShare of its history (by changes), and CompactChanges changes
// or CompactBytes bytes. A compaction reads and writes the whole document,
// so compacting a long history every CompactChanges changes (or every 4
// MiB of larger edits) would cost each change in proportion to the
// history; this way the cost per change stays flat, and a reload replays
// at most an eighth of the history. A few large changes (a pasted book)
// still compact soon: they are a large share of a short history.
const compactShare = 8

func (r *Room) receive(p Peer, msg wire.Message, readOnly bool) {
	ps := r.peers[p]
	if ps == nil {
		ps = &peerState{sync: r.resumeSyncState(p)}
		ps.readOnly = readOnly
		ps.sync.SetReadOnly(readOnly)
		r.peers[p] = ps
		r.publishPeers()
	}
	var err error
	if readOnly {
		var dropped bool
		dropped, err = r.receiveReadOnly(ps, msg.Data)
		if dropped && err == nil && !ps.warned {
			ps.warned = true
			p.Send(wire.Message{Type: wire.TypeError, TargetID: p.ID(), ErrorMessage: fmt.Sprintf(
				"document %s is read-only for this connection: your changes are not applied, stored or relayed", r.id)})
		}
	} else {
		err = r.receiveChanges(ps, msg.Data)
	}
	if err != nil {
		r.log.Warn("bad sync message", "peer", string(p.ID()), "err", err)
		if errors.Is(err, core.ErrLimitExceeded) {
			r.cfg.Metrics.Limited(LimitChanges)
		}
		r.removePeer(p)
		p.Fail(wire.CloseInvalidData, fmt.Sprintf("document %s: %v", r.id, err))
		return
	}
	ps.dirty = true
	if msg.Type == wire.TypeRequest && !r.stored && r.doc.Empty() && !ps.wants {
		// A later request of a peer that waits already keeps its deadline.
		ps.wants, ps.unavailableAt = true, time.Time{}
		if r.cfg.UnavailableGrace > 0 {
			ps.unavailableAt = time.Now().Add(r.cfg.UnavailableGrace)
			if r.unavailableDue.IsZero() {
				r.unavailableDue = ps.unavailableAt
			}
		}
	}
}

// receiveChanges applies a writer's sync message: the engine decodes it
// and updates the peer's sync state, and the changes it carries that the
// graph lacks are validated and applied by the document (core's rules,
// limits and held changes), queued as pending, and added to the graph.
// A refused message changes nothing.
func (r *Room) receiveChanges(ps *peerState, data []byte) error {
	m, err := r.decode(data)
	if err != nil {
		return err
	}
	if m.Version != engine.MessageV1 {
		// Only a peer that saw a trailer from the server sends V2, and
		// only read-only peers are sent one.
		return fmt.Errorf("%w: V2 sync messages are not supported (this server never advertises them)", core.ErrBadSyncMessage)
	}
	admitted := false
	_, err = ps.sync.ApplyAdmitted(r.graph, m, func(fresh []*engine.Change) ([]*engine.Change, error) {
		raws := make([][]byte, len(fresh))
		for i, c := range fresh {
			raws[i] = c.Raw
		}
		applied, err := r.doc.ReceiveChanges(raws, ps)
		if err != nil {
			return nil, err
		}
		admitted = true
		r.queue(applied)
		out := make([]*engine.Change, 0, len(applied))
		for _, c := range applied {
			ec, err := engine.ParseChange(c.Data)
			if err != nil {
				return out, fmt.Errorf("%w: change %x the document applied: %w", engine.ErrAdmitted, c.Hash[:4], err)
			}
			out = append(out, ec)
		}
		return out, nil
	})
	if err != nil && admitted {
		// The document took the changes (they are pending, and will be
		// stored) but the graph did not: make it whole again.
		r.repairGraph(err)
		return nil
	}
	return err
}

// decode decodes a peer's sync message. A message the engine cannot
// decode is refused with the reason the core gives for it, when the core
// refuses it too (the reasons peers and operators know), and with the
// engine's otherwise; both wrap core.ErrBadSyncMessage.
func (r *Room) decode(data []byte) (*engine.Message, error) {
	m, err := engine.DecodeMessage(data)
	if err != nil {
		if cerr := r.doc.CheckSyncMessage(data); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	return m, nil
}

// queue adds changes the document applied to the changes to store.
func (r *Room) queue(changes []core.Change) {
	for _, c := range changes {
		r.pending = append(r.pending, c)
		r.pendingB += int64(len(c.Data))
	}
}

// receiveReadOnly applies a read-only peer's sync message (changes
// decoded and dropped) and notes whether the peer's core understands
// flags. A peer that was told it is read-only takes the server for
// V2-capable (any trailer means that to a 0.5.4+ core) and sends V2
// messages: without changes, since it knows they would be dropped; those
// are taken as the V1 messages they equal. A writer's V2 message is still
// refused.
func (r *Room) receiveReadOnly(ps *peerState, data []byte) (dropped bool, err error) {
	if tr, err := core.ReadTrailer(data); err == nil && tr.HasFlags {
		ps.flags = true
	}
	var had bool
	if ps.toldReadOnly {
		if data, had, err = core.ReadOnlyV1(data); err != nil {
			return false, err
		}
	}
	m, err := r.decode(data)
	if err != nil {
		return false, err
	}
	if m.Version != engine.MessageV1 {
		return false, fmt.Errorf("%w: V2 sync messages are not supported (this server never advertises them)", core.ErrBadSyncMessage)
	}
	if len(m.Changes) > 0 {
		raws := make([][]byte, len(m.Changes))
		for i, c := range m.Changes {
			raws[i] = c.Raw
		}
		if err := r.doc.CheckReadOnlyChanges(raws); err != nil {
			return false, err
		}
	}
	res, err := ps.sync.Apply(r.graph, m)
	if err != nil {
		return false, fmt.Errorf("%w: %w", core.ErrBadSyncMessage, err)
	}
	return res.Dropped > 0 || had, nil
}

// settle ends a turn's work on the document: new changes are made durable,
// then every peer that needs one is sent its next message. It reports
// false, having sent nothing, when the store could not take the changes.
func (r *Room) settle() bool {
	if len(r.pending) > 0 && !r.flush(r.runCtx) {
		return false // nothing new may be advertised until it is durable
	}
	r.generate()
	return true
}

// flush appends pending changes to the store. On failure they stay pending
// and the caller advertises nothing; the run loop retries with backoff.
func (r *Room) flush(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	start := time.Now()
	first, seq, err := r.append(ctx)
	cancel()
	r.cfg.Metrics.StoreWrite(time.Since(start), err)
	if err != nil {
		r.reg.health.failed(err)
		if r.retry == 0 {
			r.log.Debug("store append failed; holding changes", "changes", len(r.pending), "err", err)
			r.retry = r.cfg.RetryBackoff
		} else {
			r.retry = min(2*r.retry, 5*time.Second)
		}
		return false
	}
	r.reg.health.ok()
	r.retry = 0
	r.logBytes += r.pendingB
	if rep := r.cfg.Replicator; rep != nil {
		rep.Committed(r.id, r.pending, first, seq)
	}
	r.pending, r.pendingB = r.pending[:0], 0
	r.pos.add(first, seq)
	r.lastSeq = r.pos.done
	r.stored = true
	for _, ps := range r.peers {
		ps.dirty = true // the heads may have changed: everyone gets a message
	}
	for _, w := range r.waiters {
		w <- nil
	}
	r.waiters = r.waiters[:0]
	return true
}

// append appends the pending changes and returns the log positions of
// the new ones, first..last. A store that is not followed by other nodes
// has only this room appending to the document: its new changes follow the
// room's last position.
func (r *Room) append(ctx context.Context) (first, last int64, err error) {
	if ls, ok := r.reg.store.(LogStore); ok && r.cfg.Replicator != nil {
		return ls.AppendLogged(ctx, r.id, r.pending)
	}
	last, err = r.reg.store.Append(ctx, r.id, r.pending)
	return r.lastSeq + 1, last, err
}

// exists reports whether the document exists: stored, or with changes.
func (r *Room) exists() bool { return r.stored || !r.doc.Empty() }

// do runs an operation from outside the protocol (the HTTP API) in the
// room's turn. Changes it makes are stored and then sent to every peer like
// a peer's changes; its caller hears back once they are durable.
func (r *Room) do(env envelope) {
	if err := r.doc.Materialize(); err != nil {
		env.reply <- fmt.Errorf("doc %s: %w", r.id, err)
		return
	}
	before := r.doc.Heads()
	if err := env.do(r.doc, r.exists()); err != nil {
		env.reply <- err
		r.materialized()
		return
	}
	changes, err := r.doc.ChangesSince(before)
	if err != nil {
		env.reply <- fmt.Errorf("doc %s: changes made by the operation: %w", r.id, err)
		r.materialized()
		return
	}
	if len(changes) == 0 {
		env.reply <- nil
		r.materialized()
		return
	}
	r.queue(changes)
	if err := r.addToGraph(changes); err != nil {
		r.repairGraph(err)
	}
	r.waiters = append(r.waiters, env.reply)
	r.materialized()
}

// delete removes the document from the store and from memory. Its peers are
// told it is unavailable and leave the room; a peer that still holds the
// document can upload it again by syncing, as with any new document.
func (r *Room) delete(ctx context.Context, env envelope) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.StoreTimeout)
	defer cancel()
	if err := r.reg.store.Delete(ctx, r.id); err != nil {
		env.reply <- fmt.Errorf("delete doc %s: %w", r.id, err)
		return
	}
	if rep := r.cfg.Replicator; rep != nil {
		rep.Deleted(r.id)
	}
	r.dropDocument()
	r.log.Info("document deleted")
	env.reply <- nil
}

// dropDocument empties the room after the document was deleted (here or
// on another node): its peers are told it is unavailable and leave, and
// changes not stored yet are dropped.
func (r *Room) dropDocument() {
	for p := range r.peers {
		p.Send(wire.Message{Type: wire.TypeDocUnavailable, TargetID: p.ID(), DocumentID: r.id})
	}
	clear(r.peers)
	r.publishPeers()
	for _, w := range r.waiters {
		w <- ErrDeleted
	}
	r.waiters = r.waiters[:0]
	r.setDoc(core.NewDocWith(r.cfg.Limits))
	r.stored = false
	r.pending, r.pendingB = r.pending[:0], 0
	r.lastSeq, r.snapSeq, r.logBytes, r.snapSize = 0, 0, 0, 0
	r.pos = logPos{}
}

// generate sends every peer that needs one its next sync message, and
// doc-unavailable to requesters of a document that does not exist once
// their grace is over (answerUnavailable tells those whose grace ends
// later).
func (r *Room) generate() {
	empty := r.doc.Empty()
	now := time.Now()
	for p, ps := range r.peers {
		if !ps.dirty {
			continue
		}
		ps.dirty = false
		if data, ok := ps.sync.Generate(r.graph); ok {
			if ps.readOnly && ps.flags {
				data = core.WithFlags(data, core.FlagReadOnly)
				ps.toldReadOnly = true
			}
			p.Send(wire.Message{Type: wire.TypeSync, TargetID: p.ID(), DocumentID: r.id, Data: data})
		}
		if !ps.wants {
			continue
		}
		if !empty {
			ps.wants, ps.notified = false, false
		} else if !ps.notified && !now.Before(ps.unavailableAt) {
			ps.notified = true
			p.Send(wire.Message{Type: wire.TypeDocUnavailable, TargetID: p.ID(), DocumentID: r.id})
		}
	}
}

// answerUnavailable runs when the earliest grace ends: requesters whose
// grace is over and whose document still does not exist are told
// doc-unavailable, and unavailableDue moves to the next deadline. A
// document that arrived meanwhile was sent to them by generate, which
// cleared their wants.
func (r *Room) answerUnavailable(now time.Time) {
	r.unavailableDue = time.Time{}
	if !r.doc.Empty() {
		// Its changes are applied; once they are durable, generate sends
		// the document to every requester.
		return
	}
	for p, ps := range r.peers {
		if !ps.wants || ps.notified {
			continue
		}
		if now.Before(ps.unavailableAt) {
			if r.unavailableDue.IsZero() || ps.unavailableAt.Before(r.unavailableDue) {
				r.unavailableDue = ps.unavailableAt
			}
			continue
		}
		ps.notified = true
		p.Send(wire.Message{Type: wire.TypeDocUnavailable, TargetID: p.ID(), DocumentID: r.id})
	}
}

// compact asks the registry's compactor to compact the document (off this
// turn: see compactor), unless it is compacted, a job is under way, or the
// last one failed less than compactRetry ago. A final request (the room is
// leaving memory) is made even while a job runs, so that what was stored
// after that job began is compacted too.
func (r *Room) compact(final bool) {
	r.tookCompaction()
	if !r.stored || r.lastSeq == r.snapSeq || (!final && (r.compacting || time.Now().Before(r.compactAfter))) {
		return
	}
	g := r.graph.Graph()
	need := CompactionBytes(g.Ops(), uint64(g.Len()))
	if need > uint64(r.cfg.CompactMemory) {
		if !r.overBudget {
			r.overBudget = true
			r.log.Info("document too large to compact: its changes stay logged",
				"ops", g.Ops(), "changes", g.Len(), "bytes_estimate", need, "compact_memory", r.cfg.CompactMemory)
		}
		return
	}
	r.compacting = true
	r.reg.compactor.enqueue(r, need)
}

// compactRetry is how long a room waits after a failed compaction before
// it asks again.
const compactRetry = time.Minute

// tookCompaction takes in the compactor's answer, if one has come.
func (r *Room) tookCompaction() {
	res := r.compacted.Swap(nil)
	if res == nil {
		return
	}
	r.compacting = false
	if res.err != nil {
		r.compactAfter = time.Now().Add(compactRetry)
		return
	}
	if res.elsewhere {
		r.snapSeq, r.logBytes = r.lastSeq, 0 // another node compacts it
		return
	}
	if res.throughSeq > r.snapSeq {
		// What was appended during the job stays counted.
		r.logBytes = max(0, r.logBytes-res.logBytes)
		if res.throughSeq >= r.lastSeq {
			r.logBytes = 0
		}
		r.snapSeq, r.snapSize = res.throughSeq, int64(len(res.snapshot))
	}
	if r.snapshotCovered(res.heads) {
		r.useSnapshot(res.snapshot)
	}
}

// evict makes the room's work durable, compacts, and leaves the registry if
// nobody is about to use it.
func (r *Room) evict(ctx context.Context) bool {
	if len(r.backlog) > 0 || (len(r.pending) > 0 && !r.flush(ctx)) {
		return false // unfinished work: the retry timer takes it up
	}
	r.compact(true)
	if !r.reg.tryEvict(r) {
		return false
	}
	r.log.Debug("room evicted")
	r.cfg.Metrics.RoomEvicted()
	return true
}

// drain is the room's last turn when the registry closes: whatever is
// queued is applied and made durable, and the log compacted, within
// DrainTimeout.
func (r *Room) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.DrainTimeout)
	defer cancel()
	r.turn(ctx, r.inbox.take(nil, r.cfg.InboxSize))
	for len(r.pending) > 0 && ctx.Err() == nil {
		time.Sleep(r.cfg.RetryBackoff)
		r.turn(ctx, nil)
	}
	if len(r.pending) > 0 {
		r.log.Error("shutdown with changes not durable", "changes", len(r.pending))
	}
	for _, w := range r.waiters {
		w <- ErrClosed
	}
	for p := range r.peers {
		r.saveSyncState(ctx, p)
	}
	r.compact(true) // Registry.Close waits for the compactor
}

// resumeSyncState returns the sync state for a peer that joins the room:
// the one saved when the same peer storage last left, if the store keeps
// sync states and the peer announced a storage ID, or a fresh one. A store
// failure costs only the saving: the peer starts from scratch.
func (r *Room) resumeSyncState(p Peer) *engine.SyncState {
	ss, ok := r.reg.store.(SyncStates)
	storage := p.StorageID()
	if !ok || storage == "" || !r.stored {
		return engine.NewSyncState()
	}
	ctx, cancel := context.WithTimeout(r.runCtx, r.cfg.StoreTimeout)
	defer cancel()
	saved, err := ss.LoadSyncState(ctx, r.id, storage)
	if err != nil {
		r.log.Warn("cannot load a peer's saved sync state; starting afresh", "peer", string(p.ID()), "err", err)
	}
	if saved == nil {
		return engine.NewSyncState()
	}
	return r.graph.ResumeSyncState(saved)
}

// saveSyncState keeps a leaving peer's sync state under its storage ID,
// for resumeSyncState on its next connection. Peers leave as the server
// shuts down, too: the save outlives ctx's cancellation, within
// StoreTimeout.
func (r *Room) saveSyncState(ctx context.Context, p Peer) {
	ps, ok := r.peers[p]
	st, keeps := r.reg.store.(SyncStates)
	if !ok || !keeps || p.StorageID() == "" || !r.stored {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.StoreTimeout)
	defer cancel()
	if err := st.SaveSyncState(ctx, r.id, p.StorageID(), ps.sync.Encode()); err != nil {
		r.log.Warn("cannot save a peer's sync state", "peer", string(p.ID()), "err", err)
	}
}

func (r *Room) removePeer(p Peer) {
	if _, ok := r.peers[p]; ok {
		delete(r.peers, p)
		r.publishPeers()
	}
}

func (r *Room) publishPeers() {
	list := make([]Peer, 0, len(r.peers))
	for p := range r.peers {
		list = append(list, p)
	}
	r.peerList.Store(&list)
}
