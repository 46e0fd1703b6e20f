package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
)

// Graph is the change graph of one document: every change's hash, deps,
// actor, seq, op range and bytes, its heads, and a topological order (the
// order changes were added, which is causal because Add refuses a change
// before its deps). It is all the sync protocol needs of a document.
//
// Queries cost what they touch, not the document's history: a change is
// found by hash in O(1), and ChangesSince walks back from the heads only as
// far as the changes the given heads lack (see since).
//
// A Graph is not safe for concurrent use: a room's goroutine owns it.
type Graph struct {
	pages   [][]node // nodes in topological order, pageSize per page
	n       uint32
	depPool []uint32 // the deps of every node, by node index, back to back
	// index finds a node from the first 8 bytes of its hash; a node whose
	// prefix is already taken (possible only for crafted hashes) is in
	// collide instead.
	index   map[uint64]uint32
	collide map[Hash]uint32
	actors  []actorInfo
	actorID map[string]uint32
	heads   []uint32 // sorted by hash
	raw     int      // bytes of all changes
	ops     uint64   // ops of all changes

	// Scratch for walks (marks live in the nodes, valid while their stamp
	// is epoch).
	epoch uint32
	heap  []uint32
}

const pageBits = 10
const pageSize = 1 << pageBits

// node is one change of a Graph.
type node struct {
	hash    Hash
	raw     []byte
	startOp uint64
	seq     uint64
	deps    uint32 // offset in depPool
	nDeps   uint32
	actor   uint32
	numOps  uint32
	stamp   uint32 // the walk its mark belongs to
	mark    uint8
}

// Walk marks.
const (
	markOld uint8 = 1 << iota // an ancestor of (or one of) the given heads
	markNew                   // reached from our heads, not (yet) known to be old
)

// actorInfo is what a Graph keeps per actor.
type actorInfo struct {
	id    string
	seq   uint64 // its highest seq
	maxOp uint64 // its highest op counter
}

// MissingDepsError is returned by Add for a change whose deps are not all
// in the graph.
type MissingDepsError struct {
	Change  Hash
	Missing []Hash
}

func (e *MissingDepsError) Error() string {
	return fmt.Sprintf("change %x: %d of its deps are not in the graph", e.Change[:4], len(e.Missing))
}

// ErrSeq is wrapped by Add's error for a change whose seq does not follow
// its actor's last one: the core refuses such a change (a duplicate seq,
// or an actor's history that skips).
var ErrSeq = errors.New("seq does not follow the actor's last change")

// NewGraph returns an empty graph.
func NewGraph() *Graph {
	return &Graph{index: map[uint64]uint32{}, actorID: map[string]uint32{}}
}

func (g *Graph) node(i uint32) *node { return &g.pages[i>>pageBits][i&(pageSize-1)] }

func prefix(h *Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// lookup returns the index of the change with hash h.
func (g *Graph) lookup(h *Hash) (uint32, bool) {
	i, ok := g.index[prefix(h)]
	if ok && g.node(i).hash == *h {
		return i, true
	}
	if len(g.collide) > 0 {
		i, ok = g.collide[*h]
		return i, ok
	}
	return 0, false
}

// Len returns the number of changes.
func (g *Graph) Len() int { return int(g.n) }

// Bytes returns the total size of the changes' bytes.
func (g *Graph) Bytes() int { return g.raw }

// Ops returns the number of ops of all the graph's changes.
func (g *Graph) Ops() uint64 { return g.ops }

// Has reports whether the change with hash h is in the graph.
func (g *Graph) Has(h Hash) bool {
	_, ok := g.lookup(&h)
	return ok
}

// Heads returns the changes nothing depends on, sorted bytewise.
func (g *Graph) Heads() []Hash {
	out := make([]Hash, len(g.heads))
	for i, n := range g.heads {
		out[i] = g.node(n).hash
	}
	return out
}

// NextSeq returns the seq the actor's next change must have.
func (g *Graph) NextSeq(actor []byte) uint64 {
	if a, ok := g.actorID[string(actor)]; ok {
		return g.actors[a].seq + 1
	}
	return 1
}

// Change returns the change with hash h. Its Deps are a new slice; its
// Raw and Actor are the graph's, which the caller must not modify.
func (g *Graph) Change(h Hash) (*Change, bool) {
	i, ok := g.lookup(&h)
	if !ok {
		return nil, false
	}
	return g.change(i), true
}

func (g *Graph) change(i uint32) *Change {
	n := g.node(i)
	c := &Change{
		Hash: n.hash, Actor: []byte(g.actors[n.actor].id), Seq: n.seq,
		StartOp: n.startOp, NumOps: uint64(n.numOps), Raw: n.raw,
	}
	if n.nDeps > 0 {
		c.Deps = make([]Hash, n.nDeps)
		for j, d := range g.depPool[n.deps : n.deps+n.nDeps] {
			c.Deps[j] = g.node(d).hash
		}
	}
	return c
}

// Changes returns every change in topological order.
func (g *Graph) Changes() iter.Seq[*Change] {
	return func(yield func(*Change) bool) {
		for i := uint32(0); i < g.n; i++ {
			if !yield(g.change(i)) {
				return
			}
		}
	}
}

// Raw returns the bytes of the change with hash h.
func (g *Graph) Raw(h Hash) ([]byte, bool) {
	i, ok := g.lookup(&h)
	if !ok {
		return nil, false
	}
	return g.node(i).raw, true
}

// Add adds c to the graph, keeping c.Raw (the caller must not modify it).
// It reports false if the graph already has c. A change whose deps are
// not all in the graph is refused with a *MissingDepsError (the caller
// holds it until they arrive); one whose seq does not follow its actor's
// last change with an error wrapping ErrSeq.
func (g *Graph) Add(c *Change) (bool, error) {
	if g.Has(c.Hash) {
		return false, nil
	}
	if err := g.check(c, g.NextSeq(c.Actor)); err != nil {
		return false, err
	}
	g.add(c)
	return true, nil
}

// check reports why c cannot be added now, if its actor's next seq is
// next.
func (g *Graph) check(c *Change, next uint64) error {
	var missing []Hash
	for _, d := range c.Deps {
		if !g.Has(d) {
			missing = append(missing, d)
		}
	}
	if missing != nil {
		return &MissingDepsError{Change: c.Hash, Missing: missing}
	}
	if c.Seq != next {
		return fmt.Errorf("change %x: %w (seq %d, expected %d)", c.Hash[:4], ErrSeq, c.Seq, next)
	}
	if c.NumOps > math.MaxUint32 || g.n == math.MaxUint32 {
		return errors.New("graph full")
	}
	return nil
}

// add adds c, which check accepted.
func (g *Graph) add(c *Change) {
	a, ok := g.actorID[string(c.Actor)]
	if !ok {
		a = uint32(len(g.actors))
		g.actors = append(g.actors, actorInfo{id: string(c.Actor)})
		g.actorID[g.actors[a].id] = a
	}
	info := &g.actors[a]
	info.seq = c.Seq
	if c.NumOps > 0 {
		info.maxOp = max(info.maxOp, c.StartOp+c.NumOps-1)
	}
	i := g.n
	if i&(pageSize-1) == 0 {
		g.pages = append(g.pages, nil)
	}
	p := &g.pages[i>>pageBits]
	if len(*p) == cap(*p) {
		// A page grows by doubling up to pageSize, so that a document
		// of a few changes costs a few nodes, not a page of them.
		grown := make([]node, len(*p), min(max(2*cap(*p), 4), pageSize))
		copy(grown, *p)
		*p = grown
	}
	*p = append(*p, node{
		hash: c.Hash, raw: c.Raw, startOp: c.StartOp, seq: c.Seq,
		deps: uint32(len(g.depPool)), nDeps: uint32(len(c.Deps)),
		actor: a, numOps: uint32(c.NumOps),
	})
	g.n++
	for _, d := range c.Deps {
		j, _ := g.lookup(&d)
		g.depPool = append(g.depPool, j)
		if k := slices.Index(g.heads, j); k >= 0 {
			g.heads = slices.Delete(g.heads, k, k+1)
		}
	}
	k, _ := slices.BinarySearchFunc(g.heads, c.Hash, func(n uint32, h Hash) int { return compareHash(g.node(n).hash, h) })
	g.heads = slices.Insert(g.heads, k, i)
	pre := prefix(&c.Hash)
	if _, taken := g.index[pre]; taken {
		if g.collide == nil {
			g.collide = map[Hash]uint32{}
		}
		g.collide[c.Hash] = i
	} else {
		g.index[pre] = i
	}
	g.raw += len(c.Raw)
	g.ops += c.NumOps
}

// MaxOp returns the highest op counter of the actor's changes (0 if none).
func (g *Graph) MaxOp(actor []byte) uint64 {
	if a, ok := g.actorID[string(actor)]; ok {
		return g.actors[a].maxOp
	}
	return 0
}

// deps returns the node indexes of node i's deps.
func (g *Graph) deps(i uint32) []uint32 {
	n := g.node(i)
	return g.depPool[n.deps : n.deps+n.nDeps]
}

// ChangesSince returns the hashes of the changes that are neither among
// heads nor their ancestors, in topological order: what a peer at heads
// lacks. Hashes the graph does not have are ignored, as the core's clock
// ignores them.
func (g *Graph) ChangesSince(heads []Hash) []Hash {
	idx := g.since(heads)
	out := make([]Hash, len(idx))
	for i, n := range idx {
		out[i] = g.node(n).hash
	}
	return out
}

// newWalk starts a walk: every mark from before is void.
func (g *Graph) newWalk() {
	g.epoch++
	if g.epoch == 0 { // wrapped: clear the stamps once in 2^32 walks
		for _, p := range g.pages {
			for i := range p {
				p[i].stamp = 0
			}
		}
		g.epoch = 1
	}
	g.heap = g.heap[:0]
}

func (g *Graph) markOf(i uint32) uint8 {
	n := g.node(i)
	if n.stamp != g.epoch {
		return 0
	}
	return n.mark
}

func (g *Graph) setMark(i uint32, m uint8) {
	n := g.node(i)
	n.stamp, n.mark = g.epoch, m
}

// since returns the node indexes of the changes not among heads or their
// ancestors, ascending.
//
// It walks back from our heads and from the given heads at once, always
// taking the latest node first (a max-heap on the topological index), so
// that a node is taken only after every node of the walk that depends on
// it: its mark is then final. Nodes reached from the given heads are old;
// the others reached from ours are the answer. The walk stops when only old
// nodes are left to take. It touches the changes the given heads lack and
// the ancestors of the given heads that are later than the earliest of
// those: for a peer that is nearly caught up, a few nodes, whatever the
// length of the history.
func (g *Graph) since(heads []Hash) []uint32 {
	if len(heads) == 0 {
		out := make([]uint32, g.n)
		for i := range out {
			out[i] = uint32(i)
		}
		return out
	}
	g.newWalk()
	for _, h := range heads {
		if i, ok := g.lookup(&h); ok && g.markOf(i) == 0 {
			g.setMark(i, markOld)
			g.push(i)
		}
	}
	live := 0 // nodes on the heap marked new only
	for _, i := range g.heads {
		if g.markOf(i) == 0 {
			g.setMark(i, markNew)
			g.push(i)
			live++
		}
	}
	var out []uint32
	for live > 0 {
		i := g.pop()
		m := g.markOf(i)
		if m == markNew {
			live--
			out = append(out, i)
		}
		for _, d := range g.deps(i) {
			switch dm := g.markOf(d); {
			case dm == 0:
				g.setMark(d, m)
				g.push(d)
				if m == markNew {
					live++
				}
			case m == markOld && dm == markNew:
				g.setMark(d, markOld)
				live--
			}
		}
	}
	slices.Reverse(out)
	return out
}

// removeAncestors deletes from set every node that is among heads or their
// ancestors (the core's filter_changes). When heads include all of ours,
// every node is an ancestor and set is cleared without looking at its
// nodes; otherwise it walks back from heads only down to the earliest
// node of set, and stops as soon as it has taken every one of our heads
// (heads that lead to all of ours). A peer at our heads or past them (the
// ack of what we sent, perhaps with changes of its own) so costs about its
// heads, not the nodes of set: after a first sync, set is the whole
// history.
func (g *Graph) removeAncestors(set map[uint32]struct{}, heads []Hash) {
	if len(set) == 0 || len(heads) == 0 {
		return
	}
	g.newWalk()
	mine := 0 // of our heads among heads
	for _, h := range heads {
		if i, ok := g.lookup(&h); ok && g.markOf(i) == 0 {
			g.setMark(i, markOld)
			g.push(i)
			if g.isHead(i) {
				mine++
			}
		}
	}
	if mine == len(g.heads) {
		clear(set)
		return
	}
	low := uint32(math.MaxUint32)
	for i := range set {
		low = min(low, i)
	}
	// ours: our heads by index, ascending. The walk takes nodes in
	// descending order, so it has taken ours[k:] until it takes
	// ours[k-1] (or passes it, and never takes it: it is not among heads
	// or their ancestors).
	ours := slices.Clone(g.heads)
	slices.Sort(ours)
	k := len(ours)
	for len(g.heap) > 0 && len(set) > 0 {
		i := g.pop()
		if k > 0 && ours[k-1] == i {
			if k--; k == 0 {
				clear(set)
				return
			}
		}
		delete(set, i)
		for _, d := range g.deps(i) {
			if d >= low && g.markOf(d) == 0 {
				g.setMark(d, markOld)
				g.push(d)
			}
		}
	}
}

// isHead reports whether node i is one of our heads.
func (g *Graph) isHead(i uint32) bool {
	_, found := slices.BinarySearchFunc(g.heads, g.node(i).hash, func(n uint32, h Hash) int { return compareHash(g.node(n).hash, h) })
	return found
}

// push and pop keep g.heap a max-heap of node indexes.
func (g *Graph) push(i uint32) {
	h := append(g.heap, i)
	for j := len(h) - 1; j > 0; {
		p := (j - 1) / 2
		if h[p] >= h[j] {
			break
		}
		h[p], h[j] = h[j], h[p]
		j = p
	}
	g.heap = h
}

func (g *Graph) pop() uint32 {
	h := g.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	for j := 0; ; {
		l, r, m := 2*j+1, 2*j+2, j
		if l < len(h) && h[l] > h[m] {
			m = l
		}
		if r < len(h) && h[r] > h[m] {
			m = r
		}
		if m == j {
			break
		}
		h[j], h[m] = h[m], h[j]
		j = m
	}
	g.heap = h
	return top
}
