package core

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// DocumentChanges rebuilds the changes a document chunk holds, in Go, the
// way the core does when it loads one: each change's ops are the ops of its
// actor in its op range, a deletion is rebuilt from the successors that are
// no op, every op's preds are the ops that list it as a successor, and the
// change is encoded in the canonical form (canon.go). It returns the
// changes' bytes and hashes in the document's order (causal). The chunk is
// checked first (checkDocument); a document whose changes do not hash to
// its heads is refused, as the core refuses it.
func DocumentChanges(doc []byte) (raws [][]byte, hashes []Hash, err error) {
	raws, hashes, _, err = documentChangesWith(doc, unlimited(), true, nil)
	return raws, hashes, err
}

// unlimited returns the default limits without a bound on a document's
// ops: for what the server wrote itself.
func unlimited() *Limits {
	lim := DefaultLimits()
	lim.MaxDocumentOps = 1 << 40
	lim.MaxOpsPerMessage = 1 << 40
	return &lim
}

// documentChangesWith is DocumentChanges within lim (the changes' bytes
// only if wantRaws), calling pace (if set) as it goes; it also returns the
// document's heads.
func documentChangesWith(doc []byte, lim *Limits, wantRaws bool, pace func()) (raws [][]byte, hashes, heads []Hash, err error) {
	r := &reader{b: doc}
	ch, err := readChunk(r)
	if err == nil && (ch.typ != chunkDocument || len(r.b) > 0) {
		err = errors.New("not one document chunk")
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("document changes: %w", err)
	}
	keep := &docEncoder{props: map[string]uint32{}, pace: pace}
	info, err := readDocument(ch, lim, keep)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("document changes: %w", err)
	}
	raws, hashes, err = keep.rebuild(info.actors, wantRaws)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("document changes: %w", err)
	}
	isHead := map[Hash]bool{}
	for _, h := range hashes {
		isHead[h] = true
	}
	for _, c := range keep.changes {
		for _, d := range c.deps {
			delete(isHead, hashes[d])
		}
	}
	if len(isHead) != len(info.heads) || slices.ContainsFunc(info.heads, func(h Hash) bool { return !isHead[h] }) {
		return nil, nil, nil, errors.New("document changes: the rebuilt changes do not hash to the document's heads")
	}
	return raws, hashes, info.heads, nil
}

// keepRow records a stored op that readDocument read (its IDs are in the
// document's actor indexes; op.preds holds its successors).
func (e *docEncoder) keepRow(id ref, op *changeOp) {
	toID := func(r ref) opID { return opID{ctr: uint32(r.ctr), actor: uint32(r.actor)} }
	d := storedOp{id: toID(id), action: uint8(op.action), insert: op.insert, expand: op.expand, keyKind: op.key.kind,
		val: uint32(len(e.vals)), valLen: uint32(len(op.val.raw)), valType: op.val.typ, succ: uint32(len(e.succs))}
	if !op.isRoot() {
		d.obj = toID(op.obj)
	}
	switch op.key.kind {
	case keyProp:
		d.prop = e.prop(op.key.prop)
	case keyElem:
		d.elem = toID(op.key.elem)
	}
	if op.hasMark {
		d.mark = 1 + e.prop(op.markName)
	}
	for _, s := range op.preds {
		e.succs = append(e.succs, toID(s))
	}
	d.nSucc = uint32(len(e.succs)) - d.succ
	e.vals = append(e.vals, op.val.raw...)
	e.ops = append(e.ops, d)
}

// rebuiltOp is one op of a rebuilt change: a stored op (row ≥ 0) or a
// deletion (row < 0, of the stored op del), with its preds in preds[from:to].
type rebuiltOp struct {
	id       opID
	row, del int32
	from, to uint32
}

// rebuild encodes the changes of a document read by readDocument, and
// returns their hashes and, if wantRaws, their bytes.
func (e *docEncoder) rebuild(actors [][]byte, wantRaws bool) ([][]byte, []Hash, error) {
	// (op, pred) for every successor of every stored op, by op then pred.
	type predPair struct {
		op, pred uint64 // packed IDs
		row      int32  // the pred's row
	}
	var pairs []predPair
	for i := range e.ops {
		op := &e.ops[i]
		for _, s := range e.succs[op.succ : op.succ+op.nSucc] {
			pairs = append(pairs, predPair{op: pack(s), pred: pack(op.id), row: int32(i)})
		}
	}
	slices.SortFunc(pairs, func(a, b predPair) int {
		if c := cmp.Compare(a.op, b.op); c != 0 {
			return c
		}
		return cmp.Compare(a.pred, b.pred)
	})
	preds := make([]opID, len(pairs))
	for i, p := range pairs {
		preds[i] = opID{ctr: uint32(p.pred >> 32), actor: uint32(p.pred)}
	}
	// Every op to rebuild: the stored ops (by ID), with their preds, and
	// the successors that are none (deletions), after them.
	all := make([]rebuiltOp, len(e.ops), len(e.ops)+len(e.ops)/8)
	for i := range e.ops {
		all[i] = rebuiltOp{id: e.ops[i].id, row: int32(i)}
	}
	slices.SortFunc(all, func(a, b rebuiltOp) int { return cmp.Compare(pack(a.id), pack(b.id)) })
	rows := len(all)
	j := 0
	for i := 0; i < len(pairs); {
		k := i
		for k < len(pairs) && pairs[k].op == pairs[i].op {
			k++
		}
		p := pairs[i].op
		for j < rows && pack(all[j].id) < p {
			j++
		}
		if j < rows && pack(all[j].id) == p {
			all[j].from, all[j].to = uint32(i), uint32(k)
		} else {
			all = append(all, rebuiltOp{id: opID{ctr: uint32(p >> 32), actor: uint32(p)}, row: -1, del: pairs[i].row, from: uint32(i), to: uint32(k)})
		}
		i = k
	}
	// By actor, then counter: each change takes its actor's next ops.
	slices.SortFunc(all, func(a, b rebuiltOp) int {
		if c := cmp.Compare(a.id.actor, b.id.actor); c != 0 {
			return c
		}
		return cmp.Compare(a.id.ctr, b.id.ctr)
	})
	next := make([]int, len(actors)) // per actor, its first op in all not yet taken
	for a := range next {
		next[a], _ = slices.BinarySearchFunc(all, uint32(a), func(o rebuiltOp, a uint32) int { return cmp.Compare(o.id.actor, a) })
	}
	var raws [][]byte
	if wantRaws {
		raws = make([][]byte, len(e.changes))
	}
	hashes := make([]Hash, len(e.changes))
	local := make([]uint32, len(actors)) // document actor index -> the change's (0: none yet)
	var cop changeOp
	var data []byte
	for i := range e.changes {
		e.tick()
		sc := &e.changes[i]
		a := sc.actor
		start := next[a]
		end := start
		for end < len(all) && all[end].id.actor == a && uint64(all[end].id.ctr) <= sc.maxOp {
			end++
		}
		next[a] = end
		mine := all[start:end]
		c := &changeChunk{actor: actors[a], seq: sc.seq, startOp: sc.maxOp + 1 - uint64(len(mine)),
			time: sc.time, message: sc.message, extra: sc.extra}
		for _, d := range sc.deps {
			c.deps = append(c.deps, hashes[d])
		}
		// The change's other actors, in the order of the document's (sorted).
		var others []uint32
		use := func(id opID) {
			if id.actor != a && local[id.actor] == 0 {
				local[id.actor] = 1
				others = append(others, id.actor)
			}
		}
		for _, o := range mine {
			op := o.stored(e)
			if op.obj != (opID{}) {
				use(op.obj)
			}
			if o.row >= 0 && op.keyKind == keyElem {
				use(op.elem)
			} else if o.row < 0 && op.keyKind != keyProp {
				use(elemOf(op))
			}
			for _, p := range preds[o.from:o.to] {
				use(p)
			}
		}
		slices.Sort(others)
		local[a] = 0
		for k, o := range others {
			local[o] = uint32(k + 1)
			c.others = append(c.others, actors[o])
		}
		toRef := func(id opID) ref { return ref{actor: uint64(local[id.actor]), ctr: uint64(id.ctr)} }
		if e.canon == nil {
			e.canon = newCanonEncoder()
		}
		enc := e.canon
		enc.reset()
		for _, o := range mine {
			op := o.stored(e)
			cop = changeOp{preds: cop.preds[:0]}
			if op.obj != (opID{}) {
				cop.obj = toRef(op.obj)
			}
			if o.row >= 0 {
				cop.key = opKey{kind: op.keyKind}
				switch op.keyKind {
				case keyProp:
					cop.key.prop = e.propList[op.prop]
				case keyElem:
					cop.key.elem = toRef(op.elem)
				}
				cop.insert, cop.action, cop.expand = op.insert, uint64(op.action), op.expand
				cop.val = value{typ: op.valType, raw: e.vals[op.val : op.val+op.valLen]}
				if op.mark > 0 {
					cop.markName, cop.hasMark = e.propList[op.mark-1], true
				}
			} else {
				cop.action = actDelete
				if op.keyKind == keyProp {
					cop.key = opKey{kind: keyProp, prop: e.propList[op.prop]}
				} else {
					cop.key = opKey{kind: keyElem, elem: toRef(elemOf(op))}
				}
			}
			for _, p := range preds[o.from:o.to] {
				cop.preds = append(cop.preds, toRef(p))
			}
			enc.add(&cop)
		}
		for _, o := range others {
			local[o] = 0
		}
		data = appendChangeData(data[:0], c, enc.columns())
		hashes[i] = dataHash(chunkChange, data)
		if wantRaws {
			raws[i] = frameChunk(chunkChange, data)
		}
	}
	return raws, hashes, nil
}

// stored returns the stored op a rebuilt op is, or (for a deletion) the one
// it deletes.
func (o *rebuiltOp) stored(e *docEncoder) *storedOp {
	if o.row >= 0 {
		return &e.ops[o.row]
	}
	return &e.ops[o.del]
}

// elemOf returns the element a sequence op is on: an insert's own, or its
// key's.
func elemOf(op *storedOp) opID {
	if op.insert {
		return op.id
	}
	return op.elem
}

// dataHash is a chunk's hash: SHA-256 of its type, length and data.
func dataHash(typ byte, data []byte) Hash {
	h := sha256.New()
	h.Write(leb128.AppendUint([]byte{typ}, uint64(len(data))))
	h.Write(data)
	return Hash(h.Sum(nil))
}
