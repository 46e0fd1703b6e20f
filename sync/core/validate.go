package core

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
)

// Limits bound what one change, message, import or document may make the
// server decode and hand to the core. A zero (or negative) field means its
// default; the defaults are far above what editors produce, so that only
// crafted input meets them.
type Limits struct {
	// MaxOpsPerChange bounds the ops of one change (default 1<<20). It is
	// checked from the run lengths of the action column before any op is
	// decoded.
	MaxOpsPerChange int
	// MaxPredsPerOp bounds the preds of one op, and the successors of one
	// op in a document (default 1<<12).
	MaxPredsPerOp int
	// MaxOpsPerMessage bounds the ops of all changes of one sync message or
	// one imported body together (default 1<<24: an offline editor's burst of
	// 5 MB of typed text is about 4.5 million ops).
	MaxOpsPerMessage int
	// MaxDocumentOps bounds the ops and the changes of one document chunk
	// (a snapshot or an imported document; default 1<<24).
	MaxDocumentOps int
	// MaxDecompressedBytes bounds what one compressed change, or the
	// compressed columns of one document, may inflate to (default 256 MiB).
	MaxDecompressedBytes int
	// MaxPendingChanges bounds the changes a document holds back because
	// their dependencies have not arrived (default 1<<16); MaxPendingBytes
	// bounds their size (default 64 MiB). When a message would go beyond
	// either, the longest-held changes are dropped (the peer sends them
	// again when it next syncs); a message whose own held-back changes do
	// not fit is refused.
	MaxPendingChanges int
	MaxPendingBytes   int
	// MaxKeyWork bounds the sum over the keys a message (or import) writes
	// of n*n/2, n being its ops on that key other than inserts (default
	// 1<<27, about a second of the core's time). The core keeps every op on a key, overwritten ones too, and
	// scans them for each new one: n such ops cost it about n*n/2 steps, so
	// a few bytes of run-length encoded ops on one key could take it
	// hours. An editor needs n in the thousands at most (a counter
	// incremented that often in one history).
	MaxKeyWork int
}

// DefaultLimits returns the limits that zero fields of a Limits stand for.
func DefaultLimits() Limits {
	return Limits{
		MaxOpsPerChange:      1 << 20,
		MaxPredsPerOp:        1 << 12,
		MaxOpsPerMessage:     1 << 24,
		MaxDocumentOps:       1 << 24,
		MaxDecompressedBytes: 256 << 20,
		MaxPendingChanges:    1 << 16,
		MaxPendingBytes:      64 << 20,
		MaxKeyWork:           1 << 27,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	for _, f := range []struct{ v, d *int }{
		{&l.MaxOpsPerChange, &d.MaxOpsPerChange}, {&l.MaxPredsPerOp, &d.MaxPredsPerOp},
		{&l.MaxOpsPerMessage, &d.MaxOpsPerMessage}, {&l.MaxDocumentOps, &d.MaxDocumentOps},
		{&l.MaxDecompressedBytes, &d.MaxDecompressedBytes}, {&l.MaxPendingChanges, &d.MaxPendingChanges},
		{&l.MaxPendingBytes, &d.MaxPendingBytes}, {&l.MaxKeyWork, &d.MaxKeyWork},
	} {
		if *f.v <= 0 {
			*f.v = *f.d
		}
	}
	return l
}

// ErrLimitExceeded is wrapped by errors for input that goes beyond a Limits
// bound.
var ErrLimitExceeded = errors.New("limit exceeded")

// InvalidChangeError reports a change or document chunk that failed decoding
// or validation. Its chain also holds the cause (for example
// ErrLimitExceeded).
type InvalidChangeError struct {
	// Hash is the chunk's hash, zero if the chunk could not be framed.
	Hash Hash
	// Index is the chunk's position in its message, body or log.
	Index int
	// Reason says what is wrong.
	Reason string
	// Err is the underlying error.
	Err error
}

func (e *InvalidChangeError) Error() string {
	if e.Hash == (Hash{}) {
		return fmt.Sprintf("invalid change #%d: %s", e.Index, e.Reason)
	}
	return fmt.Sprintf("invalid change #%d (%x): %s", e.Index, e.Hash[:4], e.Reason)
}

func (e *InvalidChangeError) Unwrap() error { return e.Err }

func invalid(index int, h Hash, err error) error {
	return &InvalidChangeError{Hash: h, Index: index, Reason: err.Error(), Err: err}
}

// MissingDepsError reports imported changes that depend on changes neither
// the document nor the import holds.
type MissingDepsError struct {
	// Change is one change whose dependencies are missing.
	Change Hash
	// Missing are the hashes that change needs and nothing holds.
	Missing []Hash
}

func (e *MissingDepsError) Error() string {
	return fmt.Sprintf("change %x depends on %d changes that neither the document nor the import holds", e.Change[:4], len(e.Missing))
}

// objKind is an object's type.
type objKind uint8

const (
	objUnknown objKind = iota
	objMap
	objList
	objText
	objTable
)

func (k objKind) isSeq() bool { return k == objList || k == objText }

func makeKind(action uint64) objKind {
	switch action {
	case actMakeMap:
		return objMap
	case actMakeList:
		return objList
	case actMakeText:
		return objText
	case actMakeTable:
		return objTable
	}
	return objUnknown
}

// opID is an op ID with the actor as its number in a docIndex.
type opID struct {
	ctr   uint32
	actor uint32
}

type actorInfo struct {
	seq   uint64 // the actor's highest seq
	maxOp uint64 // the highest counter of the actor's ops
}

// docIndex is what the server keeps per document to validate changes
// against: the type of every object (created by a make op) and, per actor,
// its last seq and its highest op counter. It holds nothing per op. Element
// and pred existence are approximated with it: an op ID (c, a) may exist if
// c is at most a's highest counter; the core tolerates references to ops
// that do not exist (it ignores ops on unknown objects and puts elements
// after a missing one at the end), so the approximation is safe, and it
// refuses every reference to an op that no change has made yet.
type docIndex struct {
	actorNum map[string]uint32
	actors   []actorInfo
	objects  map[opID]objKind
	heads    []Hash // the document heads the index reflects
}

func newIndex() *docIndex {
	return &docIndex{actorNum: map[string]uint32{}, objects: map[opID]objKind{}}
}

// opRange is the op IDs of one change, [start, end].
type opRange struct {
	actor      uint32
	start, end uint64
}

// txn is a layer of changes over a docIndex (or over another txn): a batch
// of changes being validated, or one change inside a batch, that commit
// moves down only once it passed.
type txn struct {
	base     *docIndex
	parent   *txn
	nActors  uint32
	actorNum map[string]uint32
	actors   map[uint32]actorInfo
	objects  map[opID]objKind
	counters map[opID]bool        // counter values set in this layer's changes
	ranges   map[uint32][]opRange // op IDs of this layer's changes, by actor, ascending
	keys     [][2]uint64          // bottom layer: the objects and keys of the batch's non-insert ops
	keyCheck int                  // bottom layer: when to next add up keyWork
}

// bottom returns the layer over the index.
func (t *txn) bottom() *txn {
	for t.parent != nil {
		t = t.parent
	}
	return t
}

func (x *docIndex) begin() *txn {
	return &txn{base: x, nActors: uint32(len(x.actors))}
}

func (t *txn) begin() *txn {
	return &txn{base: t.base, parent: t, nActors: t.nActors}
}

func (t *txn) lookupActor(id []byte) (uint32, bool) {
	for l := t; l != nil; l = l.parent {
		if n, ok := l.actorNum[string(id)]; ok {
			return n, true
		}
	}
	n, ok := t.base.actorNum[string(id)]
	return n, ok
}

func (t *txn) intern(id []byte) uint32 {
	if n, ok := t.lookupActor(id); ok {
		return n
	}
	if t.actorNum == nil {
		t.actorNum = map[string]uint32{}
	}
	n := t.nActors
	t.nActors++
	t.actorNum[string(id)] = n
	return n
}

func (t *txn) actor(n uint32) actorInfo {
	for l := t; l != nil; l = l.parent {
		if a, ok := l.actors[n]; ok {
			return a
		}
	}
	if int(n) < len(t.base.actors) {
		return t.base.actors[n]
	}
	return actorInfo{}
}

func (t *txn) setActor(n uint32, a actorInfo) {
	if t.actors == nil {
		t.actors = map[uint32]actorInfo{}
	}
	t.actors[n] = a
}

func (t *txn) object(id opID) (objKind, bool) {
	for l := t; l != nil; l = l.parent {
		if k, ok := l.objects[id]; ok {
			return k, true
		}
	}
	k, ok := t.base.objects[id]
	return k, ok
}

func (t *txn) addObject(id opID, k objKind) {
	if t.objects == nil {
		t.objects = map[opID]objKind{}
	}
	t.objects[id] = k
}

func (t *txn) addRange(r opRange) {
	if t.ranges == nil {
		t.ranges = map[uint32][]opRange{}
	}
	t.ranges[r.actor] = append(t.ranges[r.actor], r)
}

// inBatch reports whether the op ID belongs to a change of this batch, and
// if so whether that op set a counter.
func (t *txn) inBatch(id opID) (in, counter bool) {
	c := uint64(id.ctr)
	for l := t; l != nil; l = l.parent {
		rs := l.ranges[id.actor]
		i, _ := slices.BinarySearchFunc(rs, c, func(r opRange, c uint64) int { return cmp.Compare(r.end, c) })
		if i < len(rs) && rs[i].start <= c {
			return true, l.counters[id]
		}
	}
	return false, false
}

// keyWork returns the sum over the layer's keys of n*n/2 (see
// Limits.MaxKeyWork). It sorts the layer's keys.
func (t *txn) keyWork() uint64 {
	slices.SortFunc(t.keys, func(a, b [2]uint64) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	work := uint64(0)
	for i := 0; i < len(t.keys); {
		j := i + 1
		for j < len(t.keys) && t.keys[j] == t.keys[i] {
			j++
		}
		n := uint64(j - i)
		work += n * n / 2
		i = j
	}
	return work
}

func (t *txn) addCounter(id opID) {
	if t.counters == nil {
		t.counters = map[opID]bool{}
	}
	t.counters[id] = true
}

// commit moves the layer into its parent (or its base index).
func (t *txn) commit() {
	if p := t.parent; p != nil {
		p.nActors = t.nActors
		for k, v := range t.actorNum {
			if p.actorNum == nil {
				p.actorNum = map[string]uint32{}
			}
			p.actorNum[k] = v
		}
		for k, v := range t.actors {
			p.setActor(k, v)
		}
		for k, v := range t.objects {
			p.addObject(k, v)
		}
		for k := range t.counters {
			p.addCounter(k)
		}
		for _, rs := range t.ranges {
			for _, r := range rs {
				p.addRange(r)
			}
		}
		return
	}
	x := t.base
	for len(x.actors) < int(t.nActors) {
		x.actors = append(x.actors, actorInfo{})
	}
	for k, v := range t.actorNum {
		x.actorNum[k] = v
	}
	for k, v := range t.actors {
		x.actors[k] = v
	}
	for k, v := range t.objects {
		x.objects[k] = v
	}
}

// Validation levels. Each rule has a level, and is enforced when the
// validator's level is at least that.
const (
	// levelIndex enforces nothing: changes already in the core are indexed.
	levelIndex = iota
	// levelSafety enforces what keeps the core from crashing or corrupting
	// the document: stored changes when a document is loaded.
	levelSafety
	// levelFull adds what any editor's changes satisfy (causality, existence,
	// canonical order): changes from peers and imports.
	levelFull
)

// validator checks changes against a txn.
type validator struct {
	lim   *Limits
	level int
	// lenient is for changes checked without what precedes them (held
	// changes, imports checked without their document): seq and start op
	// are not checked, nor whether referenced ops exist, and ops on objects
	// the index does not know are not checked against the object's type.
	lenient    bool
	local      []uint32
	known      []bool
	referenced []bool // at levelFull: which of the change's actors its ops refer to
}

// change validates c against t and records it there. It validates in a
// layer of its own, so that a change that fails leaves t as it was.
func (v *validator) change(t *txn, c *changeChunk) error {
	ct := t.begin()
	if err := v.check(ct, c); err != nil {
		return err
	}
	ct.commit()
	return nil
}

func (v *validator) rule(level int, format string, args ...any) error {
	if v.level < level {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func (v *validator) check(t *txn, c *changeChunk) error {
	if v.level >= levelFull {
		for i := 1; i < len(c.deps); i++ {
			if bytes.Compare(c.deps[i-1][:], c.deps[i][:]) >= 0 {
				return errors.New("deps not sorted")
			}
		}
		for i, o := range c.others {
			if bytes.Equal(o, c.actor) {
				return errors.New("the change's actor is among its other actors")
			}
			if i > 0 && bytes.Compare(c.others[i-1], o) >= 0 {
				return errors.New("other actors not sorted")
			}
		}
	}
	self, selfKnown := t.lookupActor(c.actor)
	if !selfKnown {
		self = t.intern(c.actor)
	}
	v.local, v.known = append(v.local[:0], self), append(v.known[:0], true)
	for _, o := range c.others {
		n, ok := t.lookupActor(o)
		v.local, v.known = append(v.local, n), append(v.known, ok)
	}
	prev := t.actor(self)
	if !v.lenient {
		if c.seq != prev.seq+1 {
			if err := v.rule(levelSafety, "seq %d, but the actor's last change is seq %d", c.seq, prev.seq); err != nil {
				return err
			}
		}
		if c.startOp <= prev.maxOp {
			if err := v.rule(levelSafety, "start op %d, but the actor's ops already reach %d", c.startOp, prev.maxOp); err != nil {
				return err
			}
		}
	}
	end := c.startOp + c.numOps - 1
	if c.numOps > 0 {
		t.addRange(opRange{actor: self, start: c.startOp, end: end})
	}
	var canon *canonEncoder
	if v.level >= levelFull {
		canon = newCanonEncoder()
		v.referenced = append(v.referenced[:0], make([]bool, c.numActors())...)
	}
	it := c.ops(v.lim)
	for it.next() {
		if err := v.op(t, c, &it.op, c.startOp+it.i-1); err != nil {
			return fmt.Errorf("op %d: %w", it.i-1, err)
		}
		if canon != nil {
			canon.add(&it.op)
		}
	}
	if it.err != nil {
		return it.err
	}
	if canon != nil {
		for i := 1; i < len(v.referenced); i++ {
			if !v.referenced[i] {
				return fmt.Errorf("other actor %d is not referred to by any op", i)
			}
		}
		if !canonical(c, canon) {
			return errors.New("not in the canonical encoding (the core would re-encode it differently when it saves, and the saved document would not load)")
		}
	}
	info := actorInfo{seq: max(prev.seq, c.seq), maxOp: prev.maxOp}
	if c.numOps > 0 {
		info.maxOp = max(prev.maxOp, end)
	}
	t.setActor(self, info)
	return nil
}

// resolve checks a reference's actor index and counter, and returns it as
// an opID (ok false if its actor is unknown to the index).
func (v *validator) resolve(c *changeChunk, r ref, what string) (opID, bool, error) {
	if r.actor >= c.numActors() {
		return opID{}, false, fmt.Errorf("%s actor index %d, but the change has %d actors", what, r.actor, c.numActors())
	}
	if v.referenced != nil {
		v.referenced[r.actor] = true
	}
	if r.ctr > math.MaxUint32 {
		return opID{}, false, fmt.Errorf("%s counter %d overflows 32 bits", what, r.ctr)
	}
	return opID{ctr: uint32(r.ctr), actor: v.local[r.actor]}, v.known[r.actor], nil
}

// causal checks that a reference is to an op the change's author had seen:
// an earlier op of this change, or an op by anyone before the change.
func (v *validator) causal(c *changeChunk, r ref, own uint64, what string) error {
	if r.ctr >= own || (r.actor != 0 && r.ctr >= c.startOp) {
		return v.rule(levelFull, "%s %d@%d is not older than the op", what, r.ctr, r.actor)
	}
	return nil
}

// exists approximates whether the op a reference names exists.
func (v *validator) exists(t *txn, c *changeChunk, r ref, id opID, known bool) bool {
	if r.actor == 0 && r.ctr >= c.startOp {
		return true // an earlier op of this change (causal checked it is earlier)
	}
	return known && uint64(id.ctr) <= t.actor(id.actor).maxOp
}

func (v *validator) op(t *txn, c *changeChunk, op *changeOp, own uint64) error {
	self := v.local[0]
	kind := objMap
	if !op.isRoot() {
		id, known, err := v.resolve(c, op.obj, "object")
		if err != nil {
			return err
		}
		if err := v.causal(c, op.obj, own, "object"); err != nil {
			return err
		}
		k, ok := objKind(0), false
		if known || op.obj.actor == 0 {
			k, ok = t.object(id)
		}
		if !ok && v.level >= levelFull && !v.lenient {
			return fmt.Errorf("op on object %d@%d, which does not exist", op.obj.ctr, op.obj.actor)
		}
		kind = k
	}
	if op.insert && op.key.kind == keyProp {
		return v.rule(levelSafety, "insert with a map key")
	}
	switch {
	case kind == objUnknown:
	case !kind.isSeq() && op.key.kind != keyProp:
		return v.rule(levelSafety, "sequence key on a map object")
	case !kind.isSeq() && op.action == actMark:
		return v.rule(levelSafety, "mark on a map object")
	case kind.isSeq() && op.key.kind == keyProp:
		return v.rule(levelSafety, "map key %q on a sequence object", op.key.prop)
	case kind.isSeq() && op.key.kind == keyHead && !op.insert:
		return v.rule(levelFull, "non-insert op on the head of a sequence")
	case op.action == actMark && kind != objText:
		return v.rule(levelFull, "mark outside a text object")
	}
	if op.action == actMark && !op.insert {
		if err := v.rule(levelFull, "mark that is not inserted"); err != nil {
			return err
		}
	}
	if op.key.kind == keyElem {
		id, known, err := v.resolve(c, op.key.elem, "element")
		if err != nil {
			return err
		}
		if err := v.causal(c, op.key.elem, own, "element"); err != nil {
			return err
		}
		if !v.lenient && !v.exists(t, c, op.key.elem, id, known) {
			if err := v.rule(levelFull, "element %d@%d does not exist", op.key.elem.ctr, op.key.elem.actor); err != nil {
				return err
			}
		}
	}
	notCounters := 0
	for j, p := range op.preds {
		id, known, err := v.resolve(c, p, "pred")
		if err != nil {
			return err
		}
		if err := v.causal(c, p, own, "pred"); err != nil {
			return err
		}
		if j > 0 && v.level >= levelFull && !lamportLess(c, op.preds[j-1], p) {
			return errors.New("preds not in ascending order")
		}
		if !v.lenient && !v.exists(t, c, p, id, known) {
			if err := v.rule(levelFull, "pred %d@%d does not exist", p.ctr, p.actor); err != nil {
				return err
			}
		}
		if op.action == actIncrement && (known || p.actor == 0) {
			if in, counter := t.inBatch(id); in && !counter {
				notCounters++
			}
		}
	}
	// An increment applies to every value its key holds, conflicting values
	// too; at least one must be a counter. Whether a value set before this
	// batch is a counter is not known (that would take an index per op).
	if op.action == actIncrement && (len(op.preds) == 0 || notCounters == len(op.preds)) {
		if err := v.rule(levelFull, "increment of no counter"); err != nil {
			return err
		}
	}
	if !op.insert && v.level >= levelFull && !v.lenient && kind != objUnknown {
		// Kept for the whole batch (a change that fails leaves its keys in:
		// the count errs on the safe side), and added up as it doubles, so
		// that a change with a million writes to one key stops early.
		b := t.bottom()
		b.keys = append(b.keys, keyPrint(op, v, c))
		if len(b.keys) >= b.keyCheck {
			if w := b.keyWork(); w > uint64(v.lim.MaxKeyWork) {
				return fmt.Errorf("%w: its ops write one key so often that applying them would take the core about %d steps (more than %d)",
					ErrLimitExceeded, w, v.lim.MaxKeyWork)
			}
			b.keyCheck = max(2*len(b.keys), 4096)
		}
	}
	ownID := opID{ctr: uint32(own), actor: self}
	switch op.action {
	case actMakeMap, actMakeList, actMakeText, actMakeTable:
		t.addObject(ownID, makeKind(op.action))
	case actSet:
		if op.val.typ == valCounter {
			t.addCounter(ownID)
		}
	}
	return nil
}

// keyPrint identifies the object and key of a non-insert op.
func keyPrint(op *changeOp, v *validator, c *changeChunk) [2]uint64 {
	var obj, key uint64
	if !op.isRoot() {
		obj = uint64(op.obj.ctr)<<32 | uint64(v.local[op.obj.actor])
	}
	switch op.key.kind {
	case keyProp:
		h := fnv.New64a()
		h.Write([]byte(op.key.prop))
		key = h.Sum64() | 1<<63
	case keyElem:
		key = uint64(op.key.elem.ctr)<<32 | uint64(v.local[op.key.elem.actor])
	}
	return [2]uint64{obj, key}
}

// lamportLess orders op IDs as the core sorts preds: by counter, then by
// actor ID bytes.
func lamportLess(c *changeChunk, a, b ref) bool {
	if a.ctr != b.ctr {
		return a.ctr < b.ctr
	}
	return bytes.Compare(c.actorAt(a.actor), c.actorAt(b.actor)) < 0
}
