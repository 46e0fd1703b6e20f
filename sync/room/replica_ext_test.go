package room_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// logStore is an in-memory room.LogStore shared by the registries of a
// test's "nodes": a change log per document numbered from 1, each hash
// once, and a snapshot with the position it covers.
type logStore struct {
	mu   sync.Mutex
	docs map[wire.DocID]*logDoc
}

type logDoc struct {
	snapshot []byte
	heads    []core.Hash
	snapSeq  int64
	last     int64
	rows     []logRow // after snapSeq
	hashes   map[core.Hash]bool
}

type logRow struct {
	seq  int64
	data []byte
}

func newLogStore() *logStore { return &logStore{docs: make(map[wire.DocID]*logDoc)} }

func (s *logStore) StorageID(context.Context) (string, error) {
	return "00000000-0000-4000-8000-000000000001", nil
}

func (s *logStore) Load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	return s.ChangesAfter(ctx, id, -1)
}

func (s *logStore) ChangesAfter(_ context.Context, id wire.DocID, after int64) (room.StoredDoc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[id]
	if d == nil {
		return room.StoredDoc{}, room.ErrNotFound
	}
	out := room.StoredDoc{LastSeq: d.last}
	if after < d.snapSeq {
		out.Snapshot, out.SnapshotHeads = d.snapshot, d.heads
	}
	for _, r := range d.rows {
		if r.seq > after {
			out.Changes = append(out.Changes, r.data)
		}
	}
	return out, nil
}

func (s *logStore) Append(ctx context.Context, id wire.DocID, changes []core.Change) (int64, error) {
	_, last, err := s.AppendLogged(ctx, id, changes)
	return last, err
}

func (s *logStore) AppendLogged(_ context.Context, id wire.DocID, changes []core.Change) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[id]
	if d == nil {
		if len(changes) == 0 {
			return 1, 0, nil
		}
		d = &logDoc{hashes: make(map[core.Hash]bool)}
		s.docs[id] = d
	}
	first := d.last + 1
	for _, c := range changes {
		if d.hashes[c.Hash] {
			continue
		}
		d.hashes[c.Hash] = true
		d.last++
		d.rows = append(d.rows, logRow{seq: d.last, data: slices.Clone(c.Data)})
	}
	return first, d.last, nil
}

func (s *logStore) Compact(_ context.Context, id wire.DocID, snapshot []byte, heads []core.Hash, through int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.docs[id]
	if d == nil {
		return room.ErrNotFound
	}
	if through < d.snapSeq || through > d.last {
		return fmt.Errorf("through %d outside [%d, %d]", through, d.snapSeq, d.last)
	}
	d.snapshot, d.heads, d.snapSeq = snapshot, heads, through
	d.rows = slices.DeleteFunc(d.rows, func(r logRow) bool { return r.seq <= through })
	return nil
}

func (s *logStore) Delete(_ context.Context, id wire.DocID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.docs, id)
	return nil
}

func (s *logStore) Close() error { return nil }

// link is a room.Replicator that hands one registry's commits and deletes
// to others, in order, on a goroutine of its own, unless dropping.
type link struct {
	mu       sync.Mutex
	to       []*room.Registry
	dropping bool
	queue    chan func()
}

func newLink(t *testing.T) *link {
	l := &link{queue: make(chan func(), 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for f := range l.queue {
			f()
		}
	}()
	t.Cleanup(func() { close(l.queue); <-done })
	return l
}

func (l *link) setDropping(on bool) { l.mu.Lock(); l.dropping = on; l.mu.Unlock() }

func (l *link) send(f func(*room.Registry)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dropping {
		return
	}
	for _, reg := range l.to {
		l.queue <- func() { f(reg) }
	}
}

func (l *link) Follow(wire.DocID)   {}
func (l *link) Unfollow(wire.DocID) {}

func (l *link) Committed(id wire.DocID, changes []core.Change, first, last int64) {
	raws := make([][]byte, len(changes))
	for i, c := range changes {
		raws[i] = slices.Clone(c.Data)
	}
	l.send(func(reg *room.Registry) { _ = reg.Remote(context.Background(), id, raws, first, last) })
}

func (l *link) Deleted(id wire.DocID) {
	l.send(func(reg *room.Registry) { _ = reg.RemoteDeleted(context.Background(), id) })
}

// twoNodes returns two registries on one logStore, each linked to the
// other.
func twoNodes(t *testing.T, compactChanges int64, idle ...time.Duration) (a, b *room.Registry, ab, ba *link) {
	st := newLogStore()
	ab, ba = newLink(t), newLink(t)
	cfg := room.Config{CatchUpDelay: 20 * time.Millisecond, CompactChanges: compactChanges}
	if len(idle) > 0 {
		cfg.IdleTimeout = idle[0]
	}
	cfgA, cfgB := cfg, cfg
	cfgA.Replicator, cfgB.Replicator = ab, ba
	a, b = newRegistry(t, st, cfgA), newRegistry(t, st, cfgB)
	ab.to, ba.to = []*room.Registry{b}, []*room.Registry{a}
	return a, b, ab, ba
}

// setAcked sets key in c's document and syncs until the room advertised
// the change.
func setAcked(c *client, key string, v any) {
	c.t.Helper()
	c.set(key, v)
	h := c.doc.Heads()[0]
	c.send(wire.TypeSync)
	c.untilAdvertised(h, 5*time.Second)
}

// TestReplicaFollowsOtherNode checks that a client of one registry
// receives what a client of another writes, through the Replicator, and
// that both write at once and converge.
func TestReplicaFollowsOtherNode(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t, 0)
	id := wire.NewDocID()
	ca, cb := newClient(t, a, id, "a"), newClient(t, b, id, "b")
	setAcked(ca, "from", "a")
	cb.send(wire.TypeRequest)
	cb.syncUntil(func() bool {
		v, err := cb.doc.RootMap().Get("from")
		return err == nil && v.Kind() == automerge.KindStr && v.Str() == "a"
	})
	for i := range 10 {
		ca.set(fmt.Sprint("a", i), int64(i))
		cb.set(fmt.Sprint("b", i), int64(i))
		ca.send(wire.TypeSync)
		cb.send(wire.TypeSync)
	}
	want := func(c *client) func() bool {
		return func() bool { return c.doc.RootMap().Len() == 21 }
	}
	ca.syncUntil(want(ca))
	cb.syncUntil(want(cb))
	ca.syncUntil(func() bool { return sameHeads(ca.doc, cb.doc) })
	cb.syncUntil(func() bool { return sameHeads(ca.doc, cb.doc) })
}

// TestReplicaCatchesUp drops the messages from one node to the other: the
// follower catches up from the log once a later message shows the gap, or
// when told to (a reconnect), also past a compaction that deleted the
// rows it lacked.
func TestReplicaCatchesUp(t *testing.T) {
	t.Parallel()
	a, b, ab, _ := twoNodes(t, 5)
	id := wire.NewDocID()
	ca, cb := newClient(t, a, id, "a"), newClient(t, b, id, "b")
	setAcked(ca, "k0", int64(0))
	cb.send(wire.TypeRequest)
	has := func(c *client, key string) func() bool {
		return func() bool { v, err := c.doc.RootMap().Get(key); return err == nil && v.Kind() != automerge.KindVoid }
	}
	cb.syncUntil(has(cb, "k0"))

	// Lost messages, then one that arrives: the gap is read from the log.
	ab.setDropping(true)
	for i := 1; i <= 3; i++ {
		setAcked(ca, fmt.Sprint("k", i), int64(i))
	}
	ab.setDropping(false)
	ca.set("k4", int64(4))
	ca.send(wire.TypeSync)
	cb.syncUntil(func() bool { return has(cb, "k1")() && has(cb, "k4")() })

	// Lost messages past a compaction (every 5 changes), and no later
	// message: CatchUp (what a NATS reconnect triggers) reads the
	// snapshot and the rest of the log.
	ab.setDropping(true)
	for i := 5; i <= 16; i++ {
		setAcked(ca, fmt.Sprint("k", i), int64(i))
	}
	if err := b.CatchUp(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	cb.syncUntil(has(cb, "k16"))
	cb.syncUntil(func() bool { return cb.doc.RootMap().Len() == 17 })
}

// TestReplicaDeleted checks that a deletion on one node makes the other
// node's peers leave.
func TestReplicaDeleted(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t, 0)
	id := wire.NewDocID()
	ca, cb := newClient(t, a, id, "a"), newClient(t, b, id, "b")
	setAcked(ca, "k", "v")
	cb.send(wire.TypeRequest)
	cb.syncUntil(func() bool { v, err := cb.doc.RootMap().Get("k"); return err == nil && v.Kind() != automerge.KindVoid })
	if err := a.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-cb.peer.out:
			if m.Type == wire.TypeDocUnavailable {
				if len(b.Peers(id)) != 0 {
					t.Errorf("peers still in node b's room: %v", b.Peers(id))
				}
				return
			}
		case <-deadline:
			t.Fatal("node b's peer was not told the document is unavailable")
		}
	}
}

// TestReplicaIdleDespiteOtherNodes checks that a room whose peers left is
// evicted after the idle timeout although other nodes keep changing its
// document: following them is no work for this node.
func TestReplicaIdleDespiteOtherNodes(t *testing.T) {
	t.Parallel()
	a, b, _, _ := twoNodes(t, 0, 150*time.Millisecond)
	id := wire.NewDocID()
	ca, cb := newClient(t, a, id, "a"), newClient(t, b, id, "b")
	setAcked(ca, "k", int64(0))
	cb.send(wire.TypeRequest)
	cb.syncUntil(func() bool { v, err := cb.doc.RootMap().Get("k"); return err == nil && v.Kind() != automerge.KindVoid })
	b.Leave(context.Background(), id, cb.peer)
	deadline := time.Now().Add(5 * time.Second)
	for i := 1; b.Len() > 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("node b kept the room of a document it only follows")
		}
		setAcked(ca, "k", int64(i))
		time.Sleep(10 * time.Millisecond)
	}
}
