package room

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// ErrClosed is returned when the registry is draining or closed.
var ErrClosed = errors.New("room registry closed")

// ErrUnavailable is returned when a document's room could not load it from
// the store; a later call tries again.
var ErrUnavailable = errors.New("document could not be loaded")

// ErrDeleted is returned to an operation whose changes were dropped because
// the document was deleted before they were stored.
var ErrDeleted = errors.New("document deleted")

// Registry owns the rooms in memory: at most one per document, created on
// first use and forgotten only after its final flush. Its lock guards only
// the map and reference counts; nothing is ever sent to a room or a socket
// while holding it.
type Registry struct {
	cfg       Config
	store     Store
	health    *storeHealth
	compactor *compactor
	cores     *coreBudget

	ctx    context.Context // parent of every room's run
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	rooms  map[wire.DocID]*Room
	closed bool
}

// NewRegistry returns a registry whose rooms keep their documents in store.
// It panics if cfg has a Replicator and store is not a LogStore.
func NewRegistry(store Store, cfg Config) *Registry {
	cfg = cfg.withDefaults()
	if _, ok := store.(LogStore); cfg.Replicator != nil && !ok {
		panic(fmt.Sprintf("room: a Replicator needs a LogStore; %T is not one", store))
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Registry{
		cfg:    cfg,
		store:  store,
		health: &storeHealth{log: cfg.Logger},
		ctx:    ctx,
		cancel: cancel,
		rooms:  make(map[wire.DocID]*Room),
		cores:  newCoreBudget(cfg.CoreMemory),
	}
	g.compactor = newCompactor(g)
	return g
}

// acquire returns the document's room, starting it if needed, with a
// reference held so that it cannot be evicted until release.
func (g *Registry) acquire(id wire.DocID) (*Room, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	r := g.rooms[id]
	if r == nil {
		r = newRoom(id, g)
		g.rooms[id] = r
		g.wg.Add(1) // done when the room ends (Room.end)
		go r.run(g.ctx)
	}
	r.refs++
	return r, nil
}

func (g *Registry) release(r *Room) {
	g.mu.Lock()
	r.refs--
	g.mu.Unlock()
}

// lookup returns the document's room if it is in memory.
func (g *Registry) lookup(id wire.DocID) *Room {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rooms[id]
}

// tryEvict removes r from the registry if nobody holds or is about to use
// it. The room calls it from its own goroutine after its final flush.
func (g *Registry) tryEvict(r *Room) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if r.refs > 0 || r.inbox.len() > 0 {
		return false
	}
	if g.rooms[r.id] == r {
		delete(g.rooms, r.id)
	}
	return true
}

// forget removes a failed room at once so that its failure is not cached:
// the next message for the document starts a fresh room and a fresh load.
func (g *Registry) forget(r *Room) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rooms[r.id] == r {
		delete(g.rooms, r.id)
	}
}

// unused reports whether nobody holds r and its inbox is empty.
func (g *Registry) unused(r *Room) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return r.refs == 0 && r.inbox.len() == 0
}

// Sync hands a sync or request message from peer to the document's room,
// starting the room if needed. It blocks while the room's inbox is full,
// which stops the calling connection from reading more. A readOnly peer
// receives the document and its changes, but changes it sends are dropped
// before they reach the document (core.SyncState.ReceiveReadOnly) and it is
// told so once.
func (g *Registry) Sync(ctx context.Context, peer Peer, msg wire.Message, readOnly bool) error {
	return g.deliver(ctx, msg.DocumentID, envelope{kind: kindSync, peer: peer, msg: msg, readOnly: readOnly})
}

// Do runs fn in the document's room, with exclusive access to its
// document; exists says whether the document exists (is stored or has
// changes). Changes fn makes are appended to the store and then sent to the
// room's peers like any peer's changes; Do returns after they are durable,
// or with fn's error. fn must leave the document unchanged when it fails.
// If ctx ends first, Do returns ctx's error, but changes already made are
// still stored and sent.
func (g *Registry) Do(ctx context.Context, id wire.DocID, fn func(doc *core.Doc, exists bool) error) error {
	return g.call(ctx, id, envelope{kind: kindDo, do: fn})
}

// Peek runs fn in the document's room, as Do does, for a read that needs
// no materialized document: what core.Doc answers from the changes it
// validated (Heads, Empty, Has). Unlike Do, it never makes the room
// materialize the document; fn must not change it.
func (g *Registry) Peek(ctx context.Context, id wire.DocID, fn func(doc *core.Doc, exists bool) error) error {
	return g.call(ctx, id, envelope{kind: kindPeek, do: fn})
}

// Delete removes the document from the store; its connected peers receive
// doc-unavailable and leave its room.
func (g *Registry) Delete(ctx context.Context, id wire.DocID) error {
	return g.call(ctx, id, envelope{kind: kindDelete})
}

// call delivers env to the document's room and waits for its answer.
func (g *Registry) call(ctx context.Context, id wire.DocID, env envelope) error {
	env.reply = make(chan error, 1)
	if err := g.deliver(ctx, id, env); err != nil {
		return err
	}
	select {
	case err := <-env.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Leave tells the document's room, if it is in memory, that peer has gone.
func (g *Registry) Leave(ctx context.Context, id wire.DocID, peer Peer) {
	_ = g.deliverExisting(ctx, id, envelope{kind: kindLeave, peer: peer}) // a stopped room has no peers to forget
}

// Peers returns the peers currently in the document's room (those that
// synced it on their current connection), or nil when the room is not in
// memory. The slice must not be modified.
func (g *Registry) Peers(id wire.DocID) []Peer {
	r := g.lookup(id)
	if r == nil {
		return nil
	}
	if p := r.peerList.Load(); p != nil {
		return *p
	}
	return nil
}

// StoreHealthy reports whether the last write to the store succeeded: false
// during an outage, while rooms hold changes they could not store.
func (g *Registry) StoreHealthy() bool { return g.health.healthy() }

// Len returns the number of rooms in memory.
func (g *Registry) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.rooms)
}

func (g *Registry) deliver(ctx context.Context, id wire.DocID, env envelope) error {
	r, err := g.acquire(id)
	if err != nil {
		return err
	}
	defer g.release(r)
	return r.inbox.put(ctx, r.done, env)
}

// Close drains the registry: new work is refused, every room makes its
// pending changes durable and asks for its compaction, then stops. It
// returns when all rooms have stopped and the compactions are done, or
// when ctx ends (an error only if rooms had not stopped: compactions
// left undone lose nothing).
func (g *Registry) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	g.cancel()
	for _, r := range g.rooms {
		if r.inbox.unpark() { // parked: it drains on a goroutine of its own
			go r.resume(false)
		}
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("drain rooms: %w", ctx.Err())
	}
	if err := g.compactor.wait(ctx); err != nil {
		// Nothing is lost: the logs stay, and are compacted next time.
		g.cfg.Logger.Warn("drained before every compaction ran", "err", err)
	}
	return nil
}
