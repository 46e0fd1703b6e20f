package core

import (
	"bytes"
	"cmp"
	"compress/flate"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// EncodeDocument writes changes as one document chunk, the format the
// core's Save writes (see document.go for its layout), in Go: no Automerge
// document is built, and it takes about 120 bytes per op at its peak where
// the core holds about 500. The changes must form a whole history (every dep
// among them), in causal order, each one change chunk, as a document's
// change graph holds them; they are decoded again here (not validated:
// they were when they were added), and a change the core would not
// rebuild to the same bytes (not canonical) is refused, since the
// document would not load with the heads it names.
//
// The stored order is the core's: objects by ID (the root first); a map's
// ops by key, then ID; a sequence's ops by element, in the order the RGA
// rule gives (an element's later insertions after it come first, the
// newest first), each element's insert followed by the ops on it by ID.
// Deletions are not stored: they are successors of the ops they delete.
// Columns of 256 bytes or more are deflated, as Save does.
func EncodeDocument(changes [][]byte) ([]byte, error) {
	return encodeDocument(changes, true, nil)
}

// storedOp is one stored op of EncodeDocument: IDs are in the document's
// actor indexes.
type storedOp struct {
	id, obj, elem opID   // elem: the key's element (key kind keyElem)
	prop          uint32 // the key's index in props (map ops); sequence ops: their element's place
	mark          uint32 // 1 + the mark name's index in props; 0: none
	val, valLen   uint32 // the raw value's place in vals
	succ, nSucc   uint32 // its successors' place in succs
	action        uint8
	valType       uint8
	keyKind       uint8
	insert        bool
	expand        bool
	seq           bool // in a sequence object
}

// storedChange is what the change columns need of one change.
type storedChange struct {
	actor   uint32
	seq     uint64
	maxOp   uint64
	time    int64
	message string
	deps    []uint64 // indexes of earlier changes
	extra   []byte
}

func encodeDocument(raws [][]byte, compress bool, pace func()) ([]byte, error) {
	lim := *unlimited()
	// First the actors (sorted, as the document lists them) and the number
	// of ops; then each change is decoded again and its ops recorded. No
	// decoded change is kept: that would cost more than its ops do on a
	// long history of small changes.
	e := &docEncoder{props: map[string]uint32{}, kinds: map[opID]objKind{{}: objMap}, pace: pace}
	actorSet := map[string]bool{}
	total := uint64(0)
	for i, raw := range raws {
		e.tick()
		c, err := decodeChangeChunk(raw, &lim)
		if err != nil {
			return nil, fmt.Errorf("encode document: change %d: %w", i, err)
		}
		actorSet[string(c.actor)] = true
		for _, o := range c.others {
			actorSet[string(o)] = true
		}
		total += c.numOps
	}
	actors := make([]string, 0, len(actorSet))
	for a := range actorSet {
		actors = append(actors, a)
	}
	slices.Sort(actors)
	actorIdx := make(map[string]uint32, len(actors))
	for i, a := range actors {
		actorIdx[a] = uint32(i)
	}

	e.ops = make([]storedOp, 0, total)
	changes := make([]storedChange, len(raws))
	index := make(map[Hash]uint64, len(raws))
	isDep := make(map[Hash]bool)
	var local []uint32
	for i, raw := range raws {
		e.tick()
		c, err := decodeChangeChunk(raw, &lim)
		if err != nil {
			return nil, fmt.Errorf("encode document: change %d: %w", i, err)
		}
		local = append(local[:0], actorIdx[string(c.actor)])
		for _, o := range c.others {
			local = append(local, actorIdx[string(o)])
		}
		if err := e.addChange(c, local, &lim); err != nil {
			return nil, fmt.Errorf("encode document: change %d: %w", i, err)
		}
		dc := storedChange{actor: local[0], seq: c.seq, maxOp: c.startOp + c.numOps - 1, time: c.time,
			message: c.message, extra: c.extra}
		if c.numOps == 0 {
			dc.maxOp = c.startOp - 1
		}
		dc.deps = make([]uint64, len(c.deps))
		for k, d := range c.deps {
			j, ok := index[d]
			if !ok {
				return nil, fmt.Errorf("encode document: change %d: dep %x is not an earlier change", i, d[:4])
			}
			dc.deps[k] = j
			isDep[d] = true
		}
		changes[i] = dc
		index[c.hash] = uint64(i)
	}
	var headList []Hash
	for h := range index {
		if !isDep[h] {
			headList = append(headList, h)
		}
	}
	slices.SortFunc(headList, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })

	order, err := e.order()
	if err != nil {
		return nil, fmt.Errorf("encode document: %w", err)
	}

	var body []byte
	body = leb128.AppendUint(body, uint64(len(actors)))
	for _, a := range actors {
		body = append(leb128.AppendUint(body, uint64(len(a))), a...)
	}
	body = appendHashes(body, headList)
	changeCols := encodeChangeColumns(changes)
	opCols := e.columns(order)
	if compress {
		deflateColumns(changeCols)
		deflateColumns(opCols)
	}
	for _, cols := range [][]column{changeCols, opCols} {
		body = leb128.AppendUint(body, uint64(len(cols)))
		for _, c := range cols {
			body = leb128.AppendUint(body, uint64(c.spec))
			body = leb128.AppendUint(body, uint64(len(c.data)))
		}
	}
	for _, cols := range [][]column{changeCols, opCols} {
		for _, c := range cols {
			body = append(body, c.data...)
		}
	}
	for _, h := range headList {
		body = leb128.AppendUint(body, index[h])
	}
	return frameChunk(chunkDocument, body), nil
}

// frameChunk writes a chunk: magic, checksum, type, length, data.
func frameChunk(typ byte, data []byte) []byte {
	head := leb128.AppendUint([]byte{typ}, uint64(len(data)))
	h := sha256.New()
	h.Write(head)
	h.Write(data)
	sum := h.Sum(nil)
	out := make([]byte, 0, 8+len(head)+len(data))
	out = append(append(append(out, chunkMagic[:]...), sum[:4]...), head...)
	return append(out, data...)
}

// deflateMin is the size from which Save deflates a column.
const deflateMin = 256

func deflateColumns(cols []column) {
	for i := range cols {
		if len(cols[i].data) < deflateMin {
			continue
		}
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.DefaultCompression)
		w.Write(cols[i].data)
		w.Close()
		cols[i].spec |= 8
		cols[i].data = buf.Bytes()
	}
}

// docEncoder collects the ops of EncodeDocument.
type docEncoder struct {
	ops      []storedOp
	vals     []byte
	props    map[string]uint32
	propList []string
	kinds    map[opID]objKind
	pairs    []succPair // (op, successor) for every pred of every op
	succs    []opID
	changes  []storedChange // read by readDocument
	canon    *canonEncoder  // reused from change to change
	// pace, if set, is called between changes and every few thousand ops
	// (see CompactPaced).
	pace func()
}

// tick calls pace, if set.
func (e *docEncoder) tick() {
	if e.pace != nil {
		e.pace()
	}
}

// succPair says that succ is a successor of op (packed IDs).
type succPair struct{ op, succ uint64 }

func (e *docEncoder) prop(s string) uint32 {
	i, ok := e.props[s]
	if !ok {
		i = uint32(len(e.propList))
		e.props[s] = i
		e.propList = append(e.propList, s)
	}
	return i
}

func docID(r ref, local []uint32) (opID, error) {
	if r.actor >= uint64(len(local)) || r.ctr > 1<<32-1 {
		return opID{}, fmt.Errorf("op ID %d@%d out of range", r.ctr, r.actor)
	}
	return opID{ctr: uint32(r.ctr), actor: local[r.actor]}, nil
}

// addChange records c's ops; local maps c's actor indexes to the
// document's.
func (e *docEncoder) addChange(c *changeChunk, local []uint32, lim *Limits) error {
	if e.canon == nil {
		e.canon = newCanonEncoder()
	}
	ce := e.canon
	ce.reset()
	it := c.ops(lim)
	for n := uint64(0); it.next(); n++ {
		op := &it.op
		ce.add(op)
		id := opID{ctr: uint32(c.startOp + n), actor: local[0]}
		d := storedOp{id: id, action: uint8(op.action), insert: op.insert, expand: op.expand, keyKind: op.key.kind}
		var err error
		if !op.isRoot() {
			if d.obj, err = docID(op.obj, local); err != nil {
				return err
			}
		}
		switch op.key.kind {
		case keyProp:
			d.prop = e.prop(op.key.prop)
		case keyElem:
			if d.elem, err = docID(op.key.elem, local); err != nil {
				return err
			}
		}
		for _, p := range op.preds {
			pid, err := docID(p, local)
			if err != nil {
				return err
			}
			e.pairs = append(e.pairs, succPair{op: pack(pid), succ: pack(id)})
		}
		if op.action == actDelete {
			continue // stored as its preds' successor only
		}
		if op.hasMark {
			d.mark = 1 + e.prop(op.markName)
		}
		if k := makeKind(op.action); k != objUnknown {
			e.kinds[id] = k
		}
		d.val, d.valLen, d.valType = uint32(len(e.vals)), uint32(len(op.val.raw)), op.val.typ
		e.vals = append(e.vals, op.val.raw...)
		e.ops = append(e.ops, d)
	}
	if it.err != nil {
		return it.err
	}
	if !canonical(c, ce) {
		return errors.New("not in the form the core writes (it would rebuild it with another hash)")
	}
	return nil
}

// order returns the ops' indexes in the stored order, and links every op
// to its successors.
func (e *docEncoder) order() ([]uint32, error) {
	// byID: the ops by ID (they come nearly sorted: by change, then
	// counter).
	byID := make([]uint32, len(e.ops))
	for i := range byID {
		byID[i] = uint32(i)
	}
	slices.SortFunc(byID, func(a, b uint32) int { return cmp.Compare(pack(e.ops[a].id), pack(e.ops[b].id)) })
	e.linkSuccessors(byID)
	find := func(id opID) (uint32, bool) {
		p := pack(id)
		k, ok := slices.BinarySearchFunc(byID, p, func(i uint32, p uint64) int { return cmp.Compare(pack(e.ops[i].id), p) })
		if !ok {
			return 0, false
		}
		return byID[k], true
	}
	// Every op's object kind; objects are few, and an object's ops mostly
	// come together.
	last, lastKind := opID{}, objMap
	for i := range e.ops {
		op := &e.ops[i]
		if op.obj != last {
			k, ok := e.kinds[op.obj]
			if !ok {
				return nil, fmt.Errorf("op %d@%d is in object %d@%d, which no op creates", op.id.ctr, op.id.actor, op.obj.ctr, op.obj.actor)
			}
			last, lastKind = op.obj, k
		}
		op.seq = lastKind.isSeq()
		if op.seq != (op.keyKind != keyProp) {
			return nil, fmt.Errorf("op %d@%d: its key does not fit its object", op.id.ctr, op.id.actor)
		}
		if op.seq && !op.insert && op.keyKind != keyElem {
			return nil, fmt.Errorf("op %d@%d: a non-insert op on the head of a sequence", op.id.ctr, op.id.actor)
		}
	}
	if err := e.positions(byID); err != nil {
		return nil, err
	}
	// A sequence op that is not an insert sorts with its element.
	for i := range e.ops {
		op := &e.ops[i]
		if op.seq && !op.insert {
			j, ok := find(op.elem)
			if !ok || !e.ops[j].insert || e.ops[j].obj != op.obj {
				return nil, fmt.Errorf("op %d@%d: its element %d@%d is not in its sequence", op.id.ctr, op.id.actor, op.elem.ctr, op.elem.actor)
			}
			op.prop = e.ops[j].prop
		}
	}
	// Map keys sort by their bytes: rank the distinct keys once.
	byKey := make([]uint32, len(e.propList))
	for i := range byKey {
		byKey[i] = uint32(i)
	}
	slices.SortFunc(byKey, func(a, b uint32) int { return cmp.Compare(e.propList[a], e.propList[b]) })
	rank := make([]uint32, len(e.propList))
	for r, p := range byKey {
		rank[p] = uint32(r)
	}
	key := func(op *storedOp) uint64 {
		if !op.seq {
			return uint64(rank[op.prop])
		}
		k := uint64(op.prop) << 1
		if !op.insert {
			k |= 1
		}
		return k
	}
	order := slices.Clone(byID)
	slices.SortFunc(order, func(a, b uint32) int {
		x, y := &e.ops[a], &e.ops[b]
		if c := cmp.Compare(pack(x.obj), pack(y.obj)); c != 0 {
			return c
		}
		if c := cmp.Compare(key(x), key(y)); c != 0 {
			return c
		}
		return cmp.Compare(pack(x.id), pack(y.id))
	})
	return order, nil
}

// positions numbers the elements of every sequence in their order (in
// their ops' prop field): an element is followed by the elements inserted
// right after it, newest (greatest ID) first, each followed by its own.
func (e *docEncoder) positions(byID []uint32) error {
	// The inserts by parent (0: the head, per object), newest first: each
	// element's children are a run. Parents are element IDs, so a run is
	// found by walking the inserts by ID alongside.
	var inserts []uint32
	for _, i := range byID {
		if e.ops[i].insert {
			inserts = append(inserts, i)
		}
	}
	parent := func(op *storedOp) uint64 {
		if op.keyKind == keyHead {
			return 0
		}
		return pack(op.elem)
	}
	byParent := slices.Clone(inserts)
	slices.SortStableFunc(byParent, func(a, b uint32) int {
		x, y := &e.ops[a], &e.ops[b]
		if c := cmp.Compare(parent(x), parent(y)); c != 0 {
			return c
		}
		if c := cmp.Compare(pack(x.obj), pack(y.obj)); c != 0 {
			return c
		}
		return cmp.Compare(pack(y.id), pack(x.id))
	})
	// first[i], end[i]: the run of byParent holding the children of op i.
	first := make([]uint32, len(e.ops))
	end := make([]uint32, len(e.ops))
	j := 0
	for j < len(byParent) && parent(&e.ops[byParent[j]]) == 0 {
		j++
	}
	heads := byParent[:j]
	for _, i := range inserts {
		p := pack(e.ops[i].id)
		for j < len(byParent) && parent(&e.ops[byParent[j]]) < p {
			j++ // a parent that is no element: left unreached, refused below
		}
		first[i] = uint32(j)
		for j < len(byParent) && parent(&e.ops[byParent[j]]) == p {
			j++
		}
		end[i] = uint32(j)
	}
	placed := 0
	var stack []uint32 // indexes into byParent, the next element on top
	for h := 0; h < len(heads); {
		obj := e.ops[heads[h]].obj
		h1 := h
		for h1 < len(heads) && e.ops[heads[h1]].obj == obj {
			h1++
		}
		for k := h1; k > h; k-- {
			stack = append(stack, uint32(k-1))
		}
		h = h1
		n := uint32(0)
		for len(stack) > 0 {
			i := byParent[stack[len(stack)-1]]
			stack = stack[:len(stack)-1]
			if e.ops[i].obj != obj {
				return fmt.Errorf("element %d@%d is inserted after an element of another object", e.ops[i].id.ctr, e.ops[i].id.actor)
			}
			e.ops[i].prop = n
			n++
			placed++
			for c := end[i]; c > first[i]; c-- {
				stack = append(stack, c-1)
			}
		}
	}
	if placed != len(inserts) {
		return fmt.Errorf("%d of the %d sequence elements are not reached from their sequence's head", len(inserts)-placed, len(inserts))
	}
	return nil
}

// linkSuccessors gives every op its successors, in ID order; byID holds
// the ops' indexes by ID.
func (e *docEncoder) linkSuccessors(byID []uint32) {
	slices.SortFunc(e.pairs, func(a, b succPair) int {
		if c := cmp.Compare(a.op, b.op); c != 0 {
			return c
		}
		return cmp.Compare(a.succ, b.succ)
	})
	e.pairs = slices.Compact(e.pairs)
	e.succs = make([]opID, 0, len(e.pairs))
	j := 0
	for _, i := range byID {
		op := &e.ops[i]
		p := pack(op.id)
		for j < len(e.pairs) && e.pairs[j].op < p {
			j++ // a pred that is not stored (refused by the validator; kept out)
		}
		op.succ = uint32(len(e.succs))
		for ; j < len(e.pairs) && e.pairs[j].op == p; j++ {
			s := e.pairs[j].succ
			e.succs = append(e.succs, opID{ctr: uint32(s >> 32), actor: uint32(s)})
		}
		op.nSucc = uint32(len(e.succs)) - op.succ
	}
	e.pairs = nil
}

// columns encodes the ops, in the given order, as the document's op
// columns (the non-empty ones).
func (e *docEncoder) columns(order []uint32) []column {
	objA, objC, keyA, idA, act, meta, succN, succA := newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc()
	keyC, idC, succC := newDeltaEnc(), newDeltaEnc(), newDeltaEnc()
	keyS, mark := newStrEnc(), newStrEnc()
	ins, exp := &boolEnc{}, &boolEnc{maybe: true}
	var raw []byte
	for _, i := range order {
		op := &e.ops[i]
		if op.obj == (opID{}) {
			objA.null()
			objC.null()
		} else {
			objA.value(uint64(op.obj.actor))
			objC.value(uint64(op.obj.ctr))
		}
		switch op.keyKind {
		case keyProp:
			keyA.null()
			keyC.null()
			keyS.value(e.propList[op.prop])
		case keyHead:
			keyA.null()
			keyC.value(0)
			keyS.null()
		case keyElem:
			keyA.value(uint64(op.elem.actor))
			keyC.value(int64(op.elem.ctr))
			keyS.null()
		}
		idA.value(uint64(op.id.actor))
		idC.value(int64(op.id.ctr))
		ins.add(op.insert)
		act.value(uint64(op.action))
		meta.value(uint64(op.valLen)<<4 | uint64(op.valType))
		raw = append(raw, e.vals[op.val:op.val+op.valLen]...)
		succN.value(uint64(op.nSucc))
		for _, s := range e.succs[op.succ : op.succ+op.nSucc] {
			succA.value(uint64(s.actor))
			succC.value(int64(s.ctr))
		}
		exp.add(op.expand)
		if op.mark > 0 {
			mark.value(e.propList[op.mark-1])
		} else {
			mark.null()
		}
	}
	return nonEmpty([]column{
		{0x01, objA.finish()}, {0x02, objC.finish()},
		{0x11, keyA.finish()}, {0x13, keyC.rle.finish()}, {0x15, keyS.finish()},
		{0x21, idA.finish()}, {0x23, idC.rle.finish()},
		{0x34, ins.finish()}, {0x42, act.finish()}, {0x56, meta.finish()}, {0x57, raw},
		{0x80, succN.finish()}, {0x81, succA.finish()}, {0x83, succC.rle.finish()},
		{0x94, exp.finish()}, {0xa5, mark.finish()},
	})
}

func nonEmpty(all []column) []column {
	cols := all[:0]
	for _, c := range all {
		if len(c.data) > 0 {
			cols = append(cols, c)
		}
	}
	return cols
}

// encodeChangeColumns encodes the changes' metadata columns.
func encodeChangeColumns(changes []storedChange) []column {
	actor, depsN, meta := newUintEnc(), newUintEnc(), newUintEnc()
	seq, maxOp, time, depsI := newDeltaEnc(), newDeltaEnc(), newDeltaEnc(), newDeltaEnc()
	msg := newStrEnc()
	var raw []byte
	for _, c := range changes {
		actor.value(uint64(c.actor))
		seq.value(int64(c.seq))
		maxOp.value(int64(c.maxOp))
		time.value(c.time)
		if c.message == "" {
			msg.null()
		} else {
			msg.value(c.message)
		}
		depsN.value(uint64(len(c.deps)))
		for _, d := range c.deps {
			depsI.value(int64(d))
		}
		meta.value(uint64(len(c.extra))<<4 | valBytes)
		raw = append(raw, c.extra...)
	}
	return nonEmpty([]column{
		{0x01, actor.finish()}, {0x03, seq.rle.finish()}, {0x13, maxOp.rle.finish()},
		{0x23, time.rle.finish()}, {0x35, msg.finish()},
		{0x40, depsN.finish()}, {0x43, depsI.rle.finish()},
		{0x56, meta.finish()}, {0x57, raw},
	})
}
