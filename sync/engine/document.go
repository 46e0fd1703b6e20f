package engine

import (
	"errors"
	"fmt"
	"slices"
)

// Document is one document as a room holds it: its Graph, and the changes
// held back because their deps have not arrived (the core's causal queue).
// Changes from peers (SyncState.Receive) and from anywhere else (Add: a
// REST edit, the store's log) enter it the same way. A Document and its
// SyncStates are owned by one goroutine.
type Document struct {
	g    *Graph
	held heldSet
	opts Options
	snap snapshot // for whole-document syncs (SetSnapshot)
}

// Options configure a Document. Zero fields take their defaults.
type Options struct {
	// MaxHeldChanges and MaxHeldBytes bound the changes held for missing
	// deps (defaults 1<<16 changes, 64 MiB). When new held changes would
	// go beyond either, the longest-held ones are dropped (a peer sends a
	// change again after a reconnect); a message whose own held changes
	// do not fit is refused.
	MaxHeldChanges int
	MaxHeldBytes   int
	// Check, if set, is called with the changes about to be added to the
	// graph, in the order they will be added (causal), before any is; an
	// error refuses them all and the message that brought them. This is
	// where a room validates changes (sync/core) before the graph or any
	// peer sees them. Held changes are checked when their deps arrive.
	Check func(ready []*Change) error
	// HeldOutside, if set, is a validator that holds changes with missing
	// deps itself (sync/core's Doc, when changes enter through
	// SyncState.ApplyAdmitted): Generate asks peers for what those wait
	// for as it does for the Document's own held changes.
	HeldOutside Holder
}

// Holder is what a Document needs to know of changes held outside it.
type Holder interface {
	// Pending returns how many changes are held.
	Pending() int
	// PendingDeps reports whether the change with hash h is held, and if
	// so its deps.
	PendingDeps(h Hash) ([]Hash, bool)
}

func (o Options) withDefaults() Options {
	if o.MaxHeldChanges <= 0 {
		o.MaxHeldChanges = 1 << 16
	}
	if o.MaxHeldBytes <= 0 {
		o.MaxHeldBytes = 64 << 20
	}
	return o
}

// ErrTooManyHeld is wrapped by errors for a batch whose changes with
// missing deps are more than the Document may hold.
var ErrTooManyHeld = errors.New("too many changes with missing deps")

// NewDocument returns an empty document.
func NewDocument(opts Options) *Document {
	return &Document{g: NewGraph(), opts: opts.withDefaults()}
}

// Graph returns the document's change graph. Callers must not add to it
// directly while changes are held (Add releases them).
func (d *Document) Graph() *Graph { return d.g }

// Held returns the number of changes held for missing deps.
func (d *Document) Held() int { return len(d.held.m) }

// Heads returns the graph's heads.
func (d *Document) Heads() []Hash { return d.g.Heads() }

// Add adds changes from outside the sync protocol (a REST edit, the
// store's log) as a peer's are added: in causal order, holding those whose
// deps are missing. It returns the changes added to the graph, which may
// include held ones it released.
func (d *Document) Add(changes []*Change) ([]*Change, error) {
	added, _, err := d.apply(changes)
	return added, err
}

// heldSet holds changes whose deps are missing.
type heldSet struct {
	m       map[Hash]*heldChange
	waiters map[Hash][]Hash // a missing dep → held changes that list it
	bytes   int
	next    uint64
}

type heldChange struct {
	c *Change
	n uint64 // arrival order
}

func (h *heldSet) get(x Hash) *Change {
	if hc, ok := h.m[x]; ok {
		return hc.c
	}
	return nil
}

func (h *heldSet) add(c *Change, g *Graph) {
	if h.m == nil {
		h.m, h.waiters = map[Hash]*heldChange{}, map[Hash][]Hash{}
	}
	h.next++
	h.m[c.Hash] = &heldChange{c: c, n: h.next}
	h.bytes += len(c.Raw)
	for _, dep := range c.Deps {
		if !g.Has(dep) {
			h.waiters[dep] = append(h.waiters[dep], c.Hash)
		}
	}
}

func (h *heldSet) remove(x Hash) {
	hc, ok := h.m[x]
	if !ok {
		return
	}
	delete(h.m, x)
	h.bytes -= len(hc.c.Raw)
	for _, dep := range hc.c.Deps {
		ws := slices.DeleteFunc(h.waiters[dep], func(w Hash) bool { return w == x })
		if len(ws) == 0 {
			delete(h.waiters, dep)
		} else {
			h.waiters[dep] = ws
		}
	}
}

// evict drops the longest-held changes until the set is within bounds.
func (h *heldSet) evict(maxChanges, maxBytes int) {
	if len(h.m) <= maxChanges && h.bytes <= maxBytes {
		return
	}
	all := make([]*heldChange, 0, len(h.m))
	for _, hc := range h.m {
		all = append(all, hc)
	}
	slices.SortFunc(all, func(a, b *heldChange) int { return int(a.n - b.n) })
	for _, hc := range all {
		if len(h.m) <= maxChanges && h.bytes <= maxBytes {
			return
		}
		h.remove(hc.c.Hash)
	}
}

// apply adds a batch of changes: those the document lacks whose deps are
// in the graph or earlier in the causal order of the batch go to the
// graph, with the held changes they release; the others are held. The
// batch is checked in full before anything changes: a change whose seq
// does not follow its actor's, a failed Options.Check, or too many held
// changes refuse it all. It returns what it added, in causal order, and
// how many changes of the batch it held.
func (d *Document) apply(batch []*Change) (added []*Change, held int, err error) {
	g := d.g
	var fresh []*Change
	seen := map[Hash]bool{}
	for _, c := range batch {
		if seen[c.Hash] || g.Has(c.Hash) || d.held.get(c.Hash) != nil {
			continue
		}
		seen[c.Hash] = true
		fresh = append(fresh, c)
	}
	if len(fresh) == 0 {
		return nil, 0, nil
	}
	var (
		ready    []*Change
		readyIn  = map[Hash]bool{}
		seq      = map[string]uint64{}  // actors' next seqs after ready
		waiting  = map[Hash][]*Change{} // missing dep → fresh changes waiting for it
		unready  = map[Hash]*Change{}
		released []Hash
		dropped  []Hash // held changes that became ready but cannot be added
	)
	has := func(h Hash) bool { return readyIn[h] || g.Has(h) }
	depsIn := func(c *Change) (missing Hash, ok bool) {
		for _, dep := range c.Deps {
			if !has(dep) {
				return dep, false
			}
		}
		return Hash{}, true
	}
	nextSeq := func(actor []byte) uint64 {
		if s, ok := seq[string(actor)]; ok {
			return s
		}
		return g.NextSeq(actor)
	}
	var stack []Hash
	// take makes c ready if its seq fits; fromHeld says it was held.
	take := func(c *Change, fromHeld bool) error {
		if c.Seq != nextSeq(c.Actor) {
			if fromHeld {
				dropped = append(dropped, c.Hash)
				return nil
			}
			return fmt.Errorf("change %x: %w (seq %d, expected %d)", c.Hash[:4], ErrSeq, c.Seq, nextSeq(c.Actor))
		}
		seq[string(c.Actor)] = c.Seq + 1
		ready = append(ready, c)
		readyIn[c.Hash] = true
		if fromHeld {
			released = append(released, c.Hash)
		}
		stack = append(stack, c.Hash)
		return nil
	}
	// release makes ready whatever waited for the changes on the stack.
	release := func() error {
		for len(stack) > 0 {
			h := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			for _, c := range waiting[h] {
				if readyIn[c.Hash] || unready[c.Hash] == nil {
					continue
				}
				if dep, ok := depsIn(c); !ok {
					waiting[dep] = append(waiting[dep], c)
					continue
				}
				delete(unready, c.Hash)
				if err := take(c, false); err != nil {
					return err
				}
			}
			delete(waiting, h)
			for _, w := range d.held.waiters[h] {
				c := d.held.get(w)
				if c == nil || readyIn[w] {
					continue
				}
				if _, ok := depsIn(c); ok {
					if err := take(c, true); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	for _, c := range fresh {
		if dep, ok := depsIn(c); !ok {
			unready[c.Hash] = c
			waiting[dep] = append(waiting[dep], c)
			continue
		}
		if err := take(c, false); err != nil {
			return nil, 0, err
		}
		if err := release(); err != nil {
			return nil, 0, err
		}
	}
	hold := 0
	holdBytes := 0
	for _, c := range fresh {
		if unready[c.Hash] != nil {
			hold++
			holdBytes += len(c.Raw)
		}
	}
	if hold > d.opts.MaxHeldChanges || holdBytes > d.opts.MaxHeldBytes {
		return nil, 0, fmt.Errorf("%w: %d changes (%d bytes) wait for their deps", ErrTooManyHeld, hold, holdBytes)
	}
	if d.opts.Check != nil && len(ready) > 0 {
		if err := d.opts.Check(ready); err != nil {
			return nil, 0, err
		}
	}
	// Commit.
	for _, h := range dropped {
		d.held.remove(h)
	}
	for _, h := range released {
		d.held.remove(h)
	}
	for _, c := range ready {
		cp := *c
		cp.Raw = slices.Clone(c.Raw) // the graph keeps only the bytes
		c = &cp
		g.add(c)
		added = append(added, c)
	}
	for _, c := range fresh {
		if unready[c.Hash] != nil {
			d.held.add(c.own(), g)
		}
	}
	d.held.evict(d.opts.MaxHeldChanges, d.opts.MaxHeldBytes)
	return added, hold, nil
}

// own returns a copy of c whose slices are its own, so that what the
// document keeps does not hold the buffer of a whole message alive.
func (c *Change) own() *Change {
	cp := *c
	cp.Raw = slices.Clone(c.Raw)
	cp.Actor = slices.Clone(c.Actor)
	cp.Deps = slices.Clone(c.Deps)
	return &cp
}

// missingDepsFrom returns what the document lacks to have heads: walking
// back from heads through held changes, the first hashes on each path that
// are neither in the graph nor held (the current core's missing_deps_from:
// only what this peer's heads lead to, not every held change's deps).
// Sorted.
func (d *Document) missingDepsFrom(heads []Hash) []Hash {
	var missing []Hash
	out := d.opts.HeldOutside
	if len(d.held.m) == 0 && (out == nil || out.Pending() == 0) {
		for _, h := range heads {
			if !d.g.Has(h) {
				missing = append(missing, h)
			}
		}
		return sortHashes(missing)
	}
	seen := map[Hash]bool{}
	stack := slices.Clone(heads)
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if d.g.Has(h) || seen[h] {
			continue
		}
		seen[h] = true
		if c := d.held.get(h); c != nil {
			stack = append(stack, c.Deps...)
		} else if deps, ok := d.heldOutside(h); ok {
			stack = append(stack, deps...)
		} else {
			missing = append(missing, h)
		}
	}
	return sortHashes(missing)
}

func (d *Document) heldOutside(h Hash) ([]Hash, bool) {
	if d.opts.HeldOutside == nil {
		return nil, false
	}
	return d.opts.HeldOutside.PendingDeps(h)
}

// Admit takes the changes of a peer's message that the Document lacks
// (fresh: deduplicated, in message order) to a validator outside the
// engine, which applies them or holds them for their deps, and returns
// those it applied, in causal order: fresh ones, and changes it held
// before that they released. Every change it returns must have its deps
// in the graph or earlier in the list; the Document adds them to its
// graph. An error refuses the message (the validator must then have
// applied nothing).
type Admit func(fresh []*Change) ([]*Change, error)

// admit adds a batch of changes through a validator that holds changes
// itself (see Admit). It returns what it added, and how many changes of
// the batch the validator held.
func (d *Document) admit(batch []*Change, admit Admit) (added []*Change, held int, err error) {
	var fresh []*Change
	seen := map[Hash]bool{}
	for _, c := range batch {
		if seen[c.Hash] || d.g.Has(c.Hash) || d.held.get(c.Hash) != nil {
			continue
		}
		seen[c.Hash] = true
		fresh = append(fresh, c)
	}
	if len(fresh) == 0 {
		return nil, 0, nil
	}
	added, err = admit(fresh)
	if err != nil {
		return nil, 0, err
	}
	taken := 0
	for i, c := range added {
		if _, err := d.g.Add(c); err != nil {
			return added[:i], 0, fmt.Errorf("%w: %w", ErrAdmitted, err)
		}
		if seen[c.Hash] {
			taken++
		}
	}
	return added, len(fresh) - taken, nil
}

// ErrAdmitted is wrapped by ApplyAdmitted's error for a change the
// validator applied that the graph cannot take (its deps or seq do not fit
// the graph): the validator and the graph disagree, and the caller must
// bring the graph up to date with the validator.
var ErrAdmitted = errors.New("an admitted change does not fit the graph")
