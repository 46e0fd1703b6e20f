package core

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
)

// Document chunks (type 0, Save output; storage/document.rs and
// storage/load/reconstruct_document.rs in rust/automerge@0.5.0): the sorted
// actors, the heads, the metadata of the change columns and of the op
// columns, their data (any column may be deflated), and optionally the
// heads' indexes. Each op is stored once, with its ID and its successors;
// deletions are only successors. The core rebuilds the changes from the
// ops (and checks that they hash to the heads), and builds its op trees
// straight from the stored order.
//
// Peers never send document chunks: they are refused in sync messages
// (parseChange). Snapshots and imports are decoded in full by
// checkDocument, which makes sure the core can load them without
// crashing and that its op trees will hold exactly the ops of the rebuilt
// changes; the rebuilt changes themselves are then validated like any
// change (see Doc.Import and Load).

// Change column IDs of a document chunk.
const (
	dcolActor   = 0 // actor (type Actor) and seq (type Delta)
	dcolMaxOp   = 1
	dcolTime    = 2
	dcolMessage = 3
	dcolDeps    = 4
	dcolExtra   = 5
)

// Op column IDs of a document chunk that change chunks do not have.
const (
	colID   = 2
	colSucc = 8
)

// docInfo is what checkDocument learns about a document chunk.
type docInfo struct {
	actors  [][]byte
	heads   []Hash
	changes uint64
	ops     uint64 // op rows, plus deletions rebuilt from successors
}

// checkDocument decodes a document chunk and checks that it is consistent.
func checkDocument(ch chunk, lim *Limits) (*docInfo, error) {
	return readDocument(ch, lim, nil)
}

// readDocument is checkDocument; with keep, it also records the changes'
// metadata and the stored ops there (see DocumentChanges).
func readDocument(ch chunk, lim *Limits, keep *docEncoder) (*docInfo, error) {
	if string(ch.hash[:4]) != string(ch.sum) {
		return nil, errors.New("bad chunk checksum")
	}
	r := &reader{b: ch.data}
	info := &docInfo{}
	n := r.uleb()
	if r.err == nil && n > uint64(len(r.b))/2 {
		return nil, fmt.Errorf("%d actors in %d bytes", n, len(r.b))
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		a := readActor(r)
		if r.err == nil && i > 0 && bytes.Compare(info.actors[i-1], a) >= 0 {
			return nil, errors.New("document actors not sorted")
		}
		info.actors = append(info.actors, a)
	}
	info.heads = r.hashes()
	if r.err != nil {
		return nil, fmt.Errorf("document header: %w", r.err)
	}
	changeMeta, err := readColumnMeta(r)
	if err != nil {
		return nil, fmt.Errorf("document change columns: %w", err)
	}
	opMeta, err := readColumnMeta(r)
	if err != nil {
		return nil, fmt.Errorf("document op columns: %w", err)
	}
	changeCols, rest, err := sliceColumns(changeMeta, r.b)
	if err != nil {
		return nil, fmt.Errorf("document change columns: %w", err)
	}
	opCols, rest, err := sliceColumns(opMeta, rest)
	if err != nil {
		return nil, fmt.Errorf("document op columns: %w", err)
	}
	if len(rest) > 0 { // the heads' indexes
		r = &reader{b: rest}
		for range info.heads {
			r.uleb()
		}
		if r.err != nil || len(r.b) > 0 {
			return nil, errors.New("malformed head indexes after the document's columns")
		}
	}
	budget := lim.MaxDecompressedBytes
	for _, cols := range [][]column{changeCols, opCols} {
		for i := range cols {
			if !cols[i].spec.deflated() {
				continue
			}
			out, err := inflate(cols[i].data, budget)
			if err != nil {
				return nil, fmt.Errorf("document column %#x: %w", cols[i].spec, err)
			}
			budget -= len(out)
			cols[i].data = out
		}
	}
	d := &docCheck{info: info, lim: lim, keep: keep}
	if err := d.changes(changeCols); err != nil {
		return nil, fmt.Errorf("document changes: %w", err)
	}
	if err := d.ops(opCols); err != nil {
		return nil, fmt.Errorf("document ops: %w", err)
	}
	if err := d.attribute(); err != nil {
		return nil, fmt.Errorf("document ops: %w", err)
	}
	return info, nil
}

// docCheck is the state of one checkDocument.
type docCheck struct {
	info  *docInfo
	lim   *Limits
	maxOp [][]uint32  // per actor, the max op of each of its changes, in seq order
	ids   [][]uint32  // per actor, the counters of its ops (rows and deletions)
	keep  *docEncoder // if set, what was read is recorded there
}

func (d *docCheck) changes(cols []column) error {
	var actor, seq, maxOp, time, message, depsNum, depsIdx, extraMeta, extraRaw []byte
	slots := []slotDst{
		{colSlot{dcolActor, colActor}, &actor}, {colSlot{dcolActor, colDelta}, &seq}, {colSlot{dcolMaxOp, colDelta}, &maxOp},
		{colSlot{dcolTime, colDelta}, &time}, {colSlot{dcolMessage, colString}, &message},
		{colSlot{dcolDeps, colGroup}, &depsNum}, {colSlot{dcolDeps, colDelta}, &depsIdx},
		{colSlot{dcolExtra, colValueMeta}, &extraMeta}, {colSlot{dcolExtra, colValue}, &extraRaw},
	}
	if err := assignColumns(cols, slots, dcolDeps); err != nil {
		return err
	}
	n, err := countRLE(actor, rleUint, uint64(d.lim.MaxDocumentOps))
	if err != nil {
		return fmt.Errorf("actor column: %w", err)
	}
	d.info.changes = n
	nActors := uint64(len(d.info.actors))
	d.maxOp = make([][]uint32, nActors)
	actors, seqs, maxOps, times := newRLE(actor, rleUint), newDelta(seq), newDelta(maxOp), newDelta(time)
	messages, deps, extras := newRLE(message, rleString), newRefList(depsNum, nil, depsIdx), newValueCol(extraMeta, extraRaw)
	for i := uint64(0); i < n; i++ {
		if ok, null := entry(&actors); !ok || null {
			return fmt.Errorf("change %d: actor: %w", i, firstErr(actors.err(), errNullEntry))
		}
		a := actors.u
		if a >= nActors {
			return fmt.Errorf("change %d: actor index %d of %d", i, a, nActors)
		}
		if !seqs.next() || seqs.null {
			return fmt.Errorf("change %d: seq: %w", i, firstErr(seqs.err(), errNullEntry))
		}
		if want := uint64(len(d.maxOp[a])) + 1; seqs.abs < 0 || uint64(seqs.abs) != want {
			return fmt.Errorf("change %d: seq %d, but the actor's changes so far reach seq %d", i, seqs.abs, want-1)
		}
		if !maxOps.next() || maxOps.null {
			return fmt.Errorf("change %d: max op: %w", i, firstErr(maxOps.err(), errNullEntry))
		}
		m := maxOps.abs
		if m < 0 || m > math.MaxUint32 {
			return fmt.Errorf("change %d: max op %d", i, m)
		}
		if prev := d.maxOp[a]; len(prev) > 0 && uint32(m) < prev[len(prev)-1] {
			return fmt.Errorf("change %d: max op %d below the actor's previous %d", i, m, prev[len(prev)-1])
		}
		d.maxOp[a] = append(d.maxOp[a], uint32(m))
		if !times.next() || times.null {
			return fmt.Errorf("change %d: time: %w", i, firstErr(times.err(), errNullEntry))
		}
		msgOK, msgNull := entry(&messages)
		if err := messages.err(); err != nil {
			return fmt.Errorf("change %d: message: %w", i, err)
		}
		var kept *storedChange
		if d.keep != nil {
			kept = &storedChange{actor: uint32(a), seq: uint64(seqs.abs), maxOp: uint64(m), time: times.abs}
			if msgOK && !msgNull {
				kept.message = messages.s
			}
		}
		if err := d.deps(&deps, i, kept); err != nil {
			return fmt.Errorf("change %d: deps: %w", i, err)
		}
		v, ok := extras.next()
		if ok && v.typ != valBytes {
			return fmt.Errorf("change %d: extra bytes of value type %d", i, v.typ)
		}
		if err := extras.err(); err != nil {
			return fmt.Errorf("change %d: extra bytes: %w", i, err)
		}
		if kept != nil {
			kept.extra = v.raw
			d.keep.changes = append(d.keep.changes, *kept)
		}
	}
	return nil
}

// deps reads change i's deps, which must be earlier changes (recorded in
// kept, if set).
func (d *docCheck) deps(l *refList, i uint64, kept *storedChange) error {
	if ok, null := entry(&l.num); !ok || null {
		return firstErr(l.num.err(), errNullEntry)
	}
	if l.num.u > i {
		return fmt.Errorf("%d deps for change %d", l.num.u, i)
	}
	for j := uint64(0); j < l.num.u; j++ {
		if !l.ctr.next() || l.ctr.null {
			return firstErr(l.ctr.err(), errNullEntry)
		}
		if l.ctr.abs < 0 || uint64(l.ctr.abs) >= i {
			return fmt.Errorf("dep index %d", l.ctr.abs)
		}
		if kept != nil {
			kept.deps = append(kept.deps, uint64(l.ctr.abs))
		}
	}
	return nil
}

// docObj is the state of the object whose ops are being read.
type docObj struct {
	id        opID // the zero opID is the root
	kind      objKind
	started   bool     // an op of it has been read
	prevKey   string   // map objects: the previous op's key
	elem      opID     // sequence objects: the element of the current group
	prevID    opID     // the previous op's ID in the current key or group
	rows      []uint64 // packed IDs of its ops
	succs     []uint64 // packed IDs of its ops' successors
	hasGroups bool
}

func pack(id opID) uint64 { return uint64(id.ctr)<<32 | uint64(id.actor) }

// lamport compares op IDs by counter, then actor (indexes into the sorted
// actors, so by actor ID too).
func lamport(a, b opID) int {
	if a.ctr != b.ctr {
		return int(int64(a.ctr) - int64(b.ctr))
	}
	return int(int64(a.actor) - int64(b.actor))
}

func (d *docCheck) ops(cols []column) error {
	var c changeCols
	var idActor, idCtr, succNum, succActor, succCtr []byte
	slots := []slotDst{
		{colSlot{colObj, colActor}, &c.objActor}, {colSlot{colObj, colInteger}, &c.objCtr},
		{colSlot{colKey, colActor}, &c.keyActor}, {colSlot{colKey, colDelta}, &c.keyCtr}, {colSlot{colKey, colString}, &c.keyStr},
		{colSlot{colID, colActor}, &idActor}, {colSlot{colID, colDelta}, &idCtr},
		{colSlot{colInsert, colBoolean}, &c.insert}, {colSlot{colAction, colInteger}, &c.action},
		{colSlot{colVal, colValueMeta}, &c.valMeta}, {colSlot{colVal, colValue}, &c.valRaw},
		{colSlot{colSucc, colGroup}, &succNum}, {colSlot{colSucc, colActor}, &succActor}, {colSlot{colSucc, colDelta}, &succCtr},
		{colSlot{colExpand, colBoolean}, &c.expand}, {colSlot{colMarkName, colString}, &c.markName},
	}
	if err := assignColumns(cols, slots, colSucc); err != nil {
		return err
	}
	if (len(c.objActor) == 0) != (len(c.objCtr) == 0) {
		return errors.New("object actor and counter columns do not come together")
	}
	n, err := countRLE(idActor, rleUint, uint64(d.lim.MaxDocumentOps))
	if err != nil {
		return fmt.Errorf("id column: %w", err)
	}
	if nc, err := countRLE(idCtr, rleInt, n+1); err != nil || nc != n {
		return fmt.Errorf("id counter column does not match the id actor column (%d entries): %v", n, err)
	}
	if d.keep != nil {
		d.keep.ops = make([]storedOp, 0, n)
		d.keep.vals = make([]byte, 0, len(c.valRaw))
	}
	oc := newOpCols(c.objActor, c.objCtr, c.keyActor, c.keyCtr, c.keyStr, c.insert, c.action, c.valMeta, c.valRaw, c.expand, c.markName)
	idActors, idCounters := newRLE(idActor, rleUint), newDelta(idCtr)
	succs := newRefList(succNum, succActor, succCtr)
	d.ids = make([][]uint32, len(d.info.actors))
	created := map[opID]objKind{}
	obj := &docObj{kind: objMap}
	var op changeOp
	for i := uint64(0); i < n; i++ {
		op = changeOp{preds: op.preds[:0]}
		if !idActors.next() || idActors.null || !idCounters.next() || idCounters.null {
			return fmt.Errorf("op %d: id: %w", i, firstErr(idActors.err(), idCounters.err(), errNullEntry))
		}
		idRef := ref{actor: idActors.u, ctr: uint64(max(idCounters.abs, 0))}
		err := oc.next(&op)
		if err == nil {
			op.preds, err = succs.next(op.preds, d.lim.MaxPredsPerOp)
		}
		if err == nil {
			err = oc.finish(&op)
		}
		if err == nil {
			err = d.op(&obj, created, idRef, &op)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", i, err)
		}
		if d.keep != nil {
			if i%4096 == 0 {
				d.keep.tick()
			}
			d.keep.keepRow(idRef, &op)
		}
	}
	if err := oc.rawLeft(); err != nil {
		return err
	}
	return d.endObject(obj)
}

// id checks a reference and returns it as an opID.
func (d *docCheck) id(r ref, what string) (opID, error) {
	if r.actor >= uint64(len(d.info.actors)) {
		return opID{}, fmt.Errorf("%s actor index %d of %d", what, r.actor, len(d.info.actors))
	}
	if r.ctr == 0 || r.ctr > math.MaxUint32 {
		return opID{}, fmt.Errorf("%s counter %d", what, r.ctr)
	}
	return opID{ctr: uint32(r.ctr), actor: uint32(r.actor)}, nil
}

func (d *docCheck) op(objp **docObj, created map[opID]objKind, idRef ref, op *changeOp) error {
	id, err := d.id(idRef, "op")
	if err != nil {
		return err
	}
	obj := *objp
	var objID opID
	if !op.isRoot() {
		if objID, err = d.id(op.obj, "object"); err != nil {
			return err
		}
	}
	if objID != obj.id {
		if lamport(objID, obj.id) < 0 {
			return errors.New("objects out of order")
		}
		kind, ok := created[objID]
		if !ok {
			return fmt.Errorf("op on object %d@%d, which no earlier op creates", objID.ctr, objID.actor)
		}
		if err := d.endObject(obj); err != nil {
			return err
		}
		obj = &docObj{id: objID, kind: kind, rows: obj.rows[:0], succs: obj.succs[:0]}
		*objp = obj
	}
	if k := makeKind(op.action); k != objUnknown {
		created[id] = k
	}
	if err := d.order(obj, id, op); err != nil {
		return err
	}
	prev := opID{}
	for j, s := range op.preds {
		sid, err := d.id(s, "successor")
		if err != nil {
			return err
		}
		if lamport(sid, id) <= 0 {
			return fmt.Errorf("successor %d@%d is not newer than the op", sid.ctr, sid.actor)
		}
		if j > 0 && lamport(prev, sid) >= 0 {
			return errors.New("successors not in ascending order")
		}
		prev = sid
		obj.succs = append(obj.succs, pack(sid))
	}
	obj.rows = append(obj.rows, pack(id))
	obj.started = true
	return nil
}

// order checks the op's key against its object's type and the op's place
// in the stored order: map ops sorted by key, then ID; sequence ops in
// element groups (an insert, then the ops on that element, by ID).
func (d *docCheck) order(obj *docObj, id opID, op *changeOp) error {
	if op.insert && op.key.kind == keyProp {
		return errors.New("insert with a map key")
	}
	if !obj.kind.isSeq() {
		if op.key.kind != keyProp || op.action == actMark {
			return errors.New("sequence op on a map object")
		}
		if obj.started {
			if c := bytes.Compare([]byte(obj.prevKey), []byte(op.key.prop)); c > 0 || (c == 0 && lamport(obj.prevID, id) >= 0) {
				return errors.New("map ops out of order")
			}
		}
		obj.prevKey, obj.prevID = op.key.prop, id
		return nil
	}
	if op.key.kind == keyProp {
		return fmt.Errorf("map key %q on a sequence object", op.key.prop)
	}
	if op.action == actMark && (obj.kind != objText || !op.insert) {
		return errors.New("mark outside a text object or not inserted")
	}
	if op.insert {
		if op.key.kind == keyElem {
			ref, err := d.id(op.key.elem, "element")
			if err != nil {
				return err
			}
			if lamport(ref, id) >= 0 {
				return errors.New("element inserted after a newer element")
			}
		}
		obj.elem, obj.prevID, obj.hasGroups = id, id, true
		return nil
	}
	if op.key.kind != keyElem {
		return errors.New("non-insert op on the head of a sequence")
	}
	elem, err := d.id(op.key.elem, "element")
	if err != nil {
		return err
	}
	if !obj.hasGroups || elem != obj.elem || lamport(obj.prevID, id) >= 0 {
		return errors.New("sequence op out of its element's place")
	}
	obj.prevID = id
	return nil
}

// endObject rebuilds the deletions of a finished object (successors that
// are not ops of it) and records all its op IDs.
func (d *docCheck) endObject(obj *docObj) error {
	slices.Sort(obj.rows)
	slices.Sort(obj.succs)
	succs := slices.Compact(obj.succs)
	add := func(p uint64) error {
		a := p & math.MaxUint32
		d.ids[a] = append(d.ids[a], uint32(p>>32))
		d.info.ops++
		if d.info.ops > uint64(d.lim.MaxDocumentOps) {
			return fmt.Errorf("%w: more than %d ops", ErrLimitExceeded, d.lim.MaxDocumentOps)
		}
		return nil
	}
	j := 0
	for _, p := range obj.rows {
		for j < len(succs) && succs[j] < p {
			if err := add(succs[j]); err != nil {
				return err
			}
			j++
		}
		if j < len(succs) && succs[j] == p {
			j++
		}
		if err := add(p); err != nil {
			return err
		}
	}
	for ; j < len(succs); j++ {
		if err := add(succs[j]); err != nil {
			return err
		}
	}
	return nil
}

// attribute checks that the op IDs of each actor are unique and fall into
// its changes the way the core rebuilds them: a change holds the actor's
// ops above the previous change's max op up to its own, and those must be
// consecutive, ending at its max op (a change's ops have implicit IDs).
func (d *docCheck) attribute() error {
	for a, ctrs := range d.ids {
		slices.Sort(ctrs)
		changes := d.maxOp[a]
		k := 0
		for i := 0; i < len(ctrs); {
			// The op's change is the first whose max op reaches it.
			for k < len(changes) && changes[k] < ctrs[i] {
				k++
			}
			if k == len(changes) {
				return fmt.Errorf("op %d@%d belongs to no change", ctrs[i], a)
			}
			j := i + 1
			for j < len(ctrs) && ctrs[j] <= changes[k] {
				if ctrs[j] == ctrs[j-1] {
					return fmt.Errorf("op ID %d@%d appears twice", ctrs[j], a)
				}
				j++
			}
			if ctrs[j-1] != changes[k] || int(ctrs[j-1]-ctrs[i]) != j-1-i {
				return fmt.Errorf("the ops of change %d of actor %d are not consecutive up to its max op %d", k+1, a, changes[k])
			}
			i = j
			k++
		}
	}
	return nil
}
