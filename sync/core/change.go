package core

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Change chunks (SYNC-ALGORITHM.md §1.1; the binary format spec's "change
// chunks"; storage/change.rs and storage/change/change_op_columns.rs in
// rust/automerge@0.5.0). A change's data is its header (deps, actor, seq,
// start op, time, message, other actors), the metadata of its op columns,
// the columns, and optional extra bytes that the core keeps and hashes.
// Ops have no ID column: op i has ID (start_op + i, actor). Actor indexes
// in the columns count from 0 for the change's actor, then its other actors.

// Chunk types.
const (
	chunkDocument   = 0
	chunkChange     = 1
	chunkCompressed = 2
)

// Op column IDs of a change chunk.
const (
	colObj      = 0
	colKey      = 1
	colInsert   = 3
	colAction   = 4
	colVal      = 5
	colPred     = 7
	colExpand   = 9
	colMarkName = 10
)

// Op actions.
const (
	actMakeMap   = 0
	actSet       = 1
	actMakeList  = 2
	actDelete    = 3
	actMakeText  = 4
	actIncrement = 5
	actMakeTable = 6
	actMark      = 7
)

// changeChunk is a decoded change chunk; its ops are read with ops.
type changeChunk struct {
	hash    Hash
	raw     []byte // the uncompressed chunk (for a compressed chunk, rebuilt)
	deps    []Hash
	actor   []byte
	seq     uint64
	startOp uint64
	time    int64
	message string
	others  [][]byte
	numOps  uint64
	cols    changeCols
	extra   []byte
}

// changeCols holds a change's known op columns (nil when absent).
type changeCols struct {
	objActor, objCtr, keyActor, keyCtr, keyStr []byte
	insert, action, valMeta, valRaw            []byte
	predNum, predActor, predCtr                []byte
	expand, markName                           []byte
}

func (c *changeChunk) actorAt(i uint64) []byte {
	if i == 0 {
		return c.actor
	}
	return c.others[i-1]
}

func (c *changeChunk) numActors() uint64 { return uint64(len(c.others)) + 1 }

// decodeChangeChunk decodes one complete change chunk, compressed (type 2)
// or not (type 1), and the header of its ops (counting them). Its ops are
// decoded later, one at a time, by ops.
func decodeChangeChunk(b []byte, lim *Limits) (*changeChunk, error) {
	r := &reader{b: b}
	ch, err := readChunk(r)
	if err != nil {
		return nil, err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the change chunk", len(r.b))
	}
	return decodeChange(ch, b, lim)
}

// decodeChange decodes a change from its framed chunk (whose bytes are raw).
func decodeChange(ch chunk, raw []byte, lim *Limits) (*changeChunk, error) {
	data := ch.data
	switch ch.typ {
	case chunkChange:
		if string(ch.hash[:4]) != string(ch.sum) {
			return nil, errors.New("bad chunk checksum")
		}
	case chunkCompressed:
		inflated, err := inflate(ch.data, lim.MaxDecompressedBytes)
		if err != nil {
			return nil, fmt.Errorf("compressed change: %w", err)
		}
		data = inflated
		raw = leb128.AppendUint([]byte{0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, chunkChange}, uint64(len(data)))
		raw = append(raw, data...)
		ch.hash = sha256.Sum256(raw[8:])
		copy(raw[4:8], ch.hash[:4])
		if string(ch.hash[:4]) != string(ch.sum) {
			return nil, errors.New("compressed change: checksum does not match the inflated change")
		}
	default:
		return nil, fmt.Errorf("chunk type %d is not a change", ch.typ)
	}
	c, err := decodeChangeData(data, lim)
	if err != nil {
		return nil, err
	}
	c.hash, c.raw = ch.hash, raw
	return c, nil
}

// inflate decompresses raw deflate data, refusing more than max bytes of
// output and anything after the end of the deflate stream.
func inflate(data []byte, max int) ([]byte, error) {
	br := bytes.NewReader(data)
	fr := flate.NewReader(br)
	out, err := io.ReadAll(io.LimitReader(fr, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("inflate: %w", err)
	}
	if len(out) > max {
		return nil, fmt.Errorf("%w: inflates to more than %d bytes", ErrLimitExceeded, max)
	}
	if br.Len() != 0 {
		return nil, fmt.Errorf("%d bytes after the deflate stream", br.Len())
	}
	return out, nil
}

// readActor reads a length-prefixed actor ID.
func readActor(r *reader) []byte {
	n := r.uleb()
	if r.err == nil && (n == 0 || n > maxActorLen) {
		r.fail(fmt.Errorf("actor ID of %d bytes", n))
		return nil
	}
	return r.take(n)
}

// decodeChangeData decodes a change's data (the chunk without its header).
func decodeChangeData(data []byte, lim *Limits) (*changeChunk, error) {
	r := &reader{b: data}
	c := &changeChunk{deps: r.hashes()}
	c.actor = readActor(r)
	c.seq = r.uleb()
	c.startOp = r.uleb()
	c.time = r.sleb()
	c.message = readString(r)
	if r.err != nil {
		return nil, fmt.Errorf("change header: %w", r.err)
	}
	n := r.uleb()
	if r.err == nil && n > uint64(len(r.b)) {
		return nil, fmt.Errorf("%d other actors in %d bytes", n, len(r.b))
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		c.others = append(c.others, readActor(r))
	}
	if r.err != nil {
		return nil, fmt.Errorf("change header: other actors: %w", r.err)
	}
	if c.seq == 0 {
		return nil, errors.New("change with seq 0")
	}
	if c.startOp == 0 {
		return nil, errors.New("change with start op 0")
	}
	meta, err := readColumnMeta(r)
	if err != nil {
		return nil, fmt.Errorf("change op columns: %w", err)
	}
	for _, m := range meta {
		if m.spec.deflated() {
			return nil, errors.New("change with compressed op columns")
		}
	}
	cols, extra, err := sliceColumns(meta, r.b)
	if err != nil {
		return nil, fmt.Errorf("change op columns: %w", err)
	}
	c.extra = extra
	cc := &c.cols
	slots := []slotDst{
		{colSlot{colObj, colActor}, &cc.objActor}, {colSlot{colObj, colInteger}, &cc.objCtr},
		{colSlot{colKey, colActor}, &cc.keyActor}, {colSlot{colKey, colDelta}, &cc.keyCtr}, {colSlot{colKey, colString}, &cc.keyStr},
		{colSlot{colInsert, colBoolean}, &cc.insert}, {colSlot{colAction, colInteger}, &cc.action},
		{colSlot{colVal, colValueMeta}, &cc.valMeta}, {colSlot{colVal, colValue}, &cc.valRaw},
		{colSlot{colPred, colGroup}, &cc.predNum}, {colSlot{colPred, colActor}, &cc.predActor}, {colSlot{colPred, colDelta}, &cc.predCtr},
		{colSlot{colExpand, colBoolean}, &cc.expand}, {colSlot{colMarkName, colString}, &cc.markName},
	}
	if err := assignColumns(cols, slots, colPred); err != nil {
		return nil, fmt.Errorf("change op columns: %w", err)
	}
	if (len(cc.objActor) == 0) != (len(cc.objCtr) == 0) {
		return nil, errors.New("object actor and counter columns do not come together")
	}
	if (len(cc.predActor) == 0) != (len(cc.predCtr) == 0) {
		return nil, errors.New("pred actor and counter columns do not come together")
	}
	// The action column alone decides how many ops there are (the core
	// stops when it is exhausted). Count them before anything is decoded
	// per op, so that a long run in a few bytes is refused at once.
	c.numOps, err = countRLE(cc.action, rleUint, uint64(lim.MaxOpsPerChange))
	if errors.Is(err, ErrLimitExceeded) {
		return nil, fmt.Errorf("%w: more than %d ops in one change", ErrLimitExceeded, lim.MaxOpsPerChange)
	}
	if err != nil {
		return nil, fmt.Errorf("action column: %w", err)
	}
	if c.startOp > math.MaxUint32 || (c.numOps > 0 && c.startOp+c.numOps-1 > math.MaxUint32) {
		return nil, fmt.Errorf("op counters up to %d overflow 32 bits", c.startOp+c.numOps-1)
	}
	return c, nil
}

// ref is an op ID as a change writes it: an index into the change's actors
// and a counter.
type ref struct {
	actor uint64
	ctr   uint64
}

// Key kinds.
const (
	keyProp = iota // a map key (key.prop)
	keyHead        // the head of a sequence
	keyElem        // a sequence element (key.elem)
)

type opKey struct {
	kind uint8
	prop string
	elem ref
}

// changeOp is one decoded op.
type changeOp struct {
	obj      ref // root when ctr == 0
	key      opKey
	insert   bool
	action   uint64
	val      value
	preds    []ref
	expand   bool
	markName string
	hasMark  bool
}

func (o *changeOp) isRoot() bool { return o.obj.ctr == 0 }

// objCols decodes object IDs from an actor and a counter column. Missing
// columns, or entries past their end, are the root, as in the core.
type objCols struct {
	actor, ctr rle
	present    bool
}

func newObjCols(actor, ctr []byte) objCols {
	return objCols{actor: newRLE(actor, rleUint), ctr: newRLE(ctr, rleUint), present: len(actor) > 0}
}

func (d *objCols) next() (ref, error) {
	if !d.present {
		return ref{}, nil
	}
	aok, anull := entry(&d.actor)
	cok, cnull := entry(&d.ctr)
	if err := firstErr(d.actor.err(), d.ctr.err()); err != nil {
		return ref{}, fmt.Errorf("object column: %w", err)
	}
	switch {
	case (!aok || anull) && (!cok || cnull):
		return ref{}, nil
	case aok && !anull && cok && !cnull && d.ctr.u > 0:
		return ref{actor: d.actor.u, ctr: d.ctr.u}, nil
	}
	return ref{}, errors.New("malformed object ID")
}

// keyCols decodes keys from an actor, a delta counter and a string column.
type keyCols struct {
	actor, str rle
	ctr        delta
}

func newKeyCols(actor, ctr, str []byte) keyCols {
	return keyCols{actor: newRLE(actor, rleUint), ctr: newDelta(ctr), str: newRLE(str, rleString)}
}

func (d *keyCols) next() (opKey, error) {
	aok, anull := entry(&d.actor)
	cok, cnull := d.ctr.entry()
	sok, snull := entry(&d.str)
	if err := firstErr(d.actor.err(), d.ctr.err(), d.str.err()); err != nil {
		return opKey{}, fmt.Errorf("key column: %w", err)
	}
	hasA, hasC, hasS := aok && !anull, cok && !cnull, sok && !snull
	switch {
	case !hasA && !hasC && hasS:
		return opKey{kind: keyProp, prop: d.str.s}, nil
	case !hasA && hasC && !hasS && d.ctr.abs == 0:
		return opKey{kind: keyHead}, nil
	case hasA && hasC && !hasS && d.ctr.abs > 0:
		return opKey{kind: keyElem, elem: ref{actor: d.actor.u, ctr: uint64(d.ctr.abs)}}, nil
	case !hasA && !hasC && !hasS:
		return opKey{}, fmt.Errorf("key column: %w", errNullEntry)
	}
	return opKey{}, errors.New("malformed key")
}

// refList decodes lists of op IDs (preds, succs) from a group column of
// counts and an actor and a delta counter column.
type refList struct {
	num, actor rle
	ctr        delta
}

func newRefList(num, actor, ctr []byte) refList {
	return refList{num: newRLE(num, rleUint), actor: newRLE(actor, rleUint), ctr: newDelta(ctr)}
}

// next appends the next list to dst, refusing more than max entries.
func (d *refList) next(dst []ref, max int) ([]ref, error) {
	if ok, null := entry(&d.num); !ok || null {
		return dst, fmt.Errorf("group column: %w", firstErr(d.num.err(), errNullEntry))
	}
	n := d.num.u
	if n > uint64(max) {
		return dst, fmt.Errorf("%w: a list of %d op IDs, more than %d", ErrLimitExceeded, n, max)
	}
	for j := uint64(0); j < n; j++ {
		aok, anull := entry(&d.actor)
		cok, cnull := d.ctr.entry()
		if err := firstErr(d.actor.err(), d.ctr.err()); err != nil {
			return dst, fmt.Errorf("op ID columns: %w", err)
		}
		if !aok || anull || !cok || cnull {
			return dst, fmt.Errorf("op ID columns: %w", errNullEntry)
		}
		if d.ctr.abs <= 0 {
			return dst, fmt.Errorf("op ID counter %d", d.ctr.abs)
		}
		dst = append(dst, ref{actor: d.actor.u, ctr: uint64(d.ctr.abs)})
	}
	return dst, nil
}

// entry reads the next entry of an RLE column: ok is false if it has none,
// null if it is null.
func entry(d *rle) (ok, null bool) {
	if !d.next() {
		return false, false
	}
	return true, d.null
}

// entry reads the next entry of a delta column, as entry does.
func (d *delta) entry() (ok, null bool) {
	if !d.next() {
		return false, false
	}
	return true, d.null
}

// opCols decodes the columns that change ops and document ops share.
type opCols struct {
	obj            objCols
	key            keyCols
	insert, expand boolCol
	action, mark   rle
	val            valueCol
	hasExpand      bool
}

func newOpCols(objActor, objCtr, keyActor, keyCtr, keyStr, insert, action, valMeta, valRaw, expand, mark []byte) opCols {
	return opCols{
		obj: newObjCols(objActor, objCtr), key: newKeyCols(keyActor, keyCtr, keyStr),
		insert: newBool(insert), action: newRLE(action, rleUint), val: newValueCol(valMeta, valRaw),
		expand: newBool(expand), mark: newRLE(mark, rleString), hasExpand: len(expand) > 0,
	}
}

// next decodes one op's shared fields into op (all but its preds or succs),
// in the core's order.
func (d *opCols) next(op *changeOp) error {
	var err error
	if op.obj, err = d.obj.next(); err != nil {
		return err
	}
	if op.key, err = d.key.next(); err != nil {
		return err
	}
	ins, ok := d.insert.next()
	if !ok {
		return fmt.Errorf("insert column: %w", firstErr(d.insert.r.err, errNullEntry))
	}
	op.insert = ins
	if ok, null := entry(&d.action); !ok || null {
		return fmt.Errorf("action column: %w", firstErr(d.action.err(), errNullEntry))
	}
	op.action = d.action.u
	if op.val, ok = d.val.next(); !ok {
		return fmt.Errorf("value column: %w", firstErr(d.val.err(), errNullEntry))
	}
	return nil
}

// finish decodes the optional fields that follow the preds or succs.
func (d *opCols) finish(op *changeOp) error {
	if d.hasExpand {
		op.expand, _ = d.expand.next()
		if d.expand.r.err != nil {
			return fmt.Errorf("expand column: %w", d.expand.r.err)
		}
	}
	if ok, null := entry(&d.mark); ok && !null {
		op.markName, op.hasMark = d.mark.s, true
	}
	if err := d.mark.err(); err != nil {
		return fmt.Errorf("mark name column: %w", err)
	}
	return checkActionValue(op.action, op.val.typ)
}

// rawLeft reports value bytes that no value's metadata claimed.
func (d *opCols) rawLeft() error {
	if n := len(d.val.raw.b); n > 0 {
		return fmt.Errorf("%d bytes in the raw value column that no value's metadata claims", n)
	}
	return nil
}

// opIter decodes a change's ops one at a time, the way the core's
// ChangeOpsIter does (it reuses op.preds between ops).
type opIter struct {
	c     *changeChunk
	lim   *Limits
	cols  opCols
	preds refList
	i     uint64
	op    changeOp
	err   error
}

func (c *changeChunk) ops(lim *Limits) *opIter {
	cc := &c.cols
	return &opIter{
		c: c, lim: lim,
		cols:  newOpCols(cc.objActor, cc.objCtr, cc.keyActor, cc.keyCtr, cc.keyStr, cc.insert, cc.action, cc.valMeta, cc.valRaw, cc.expand, cc.markName),
		preds: newRefList(cc.predNum, cc.predActor, cc.predCtr),
	}
}

// next decodes the next op into it.op. It returns false at the end or on
// an error (it.err).
func (it *opIter) next() bool {
	if it.err != nil || it.i >= it.c.numOps {
		return false
	}
	op := &it.op
	*op = changeOp{preds: op.preds[:0]}
	err := it.cols.next(op)
	if err == nil {
		if op.preds, err = it.preds.next(op.preds, it.lim.MaxPredsPerOp); err != nil {
			err = fmt.Errorf("preds: %w", err)
		}
	}
	if err == nil {
		err = it.cols.finish(op)
	}
	if err != nil {
		it.err = fmt.Errorf("op %d: %w", it.i, err)
		return false
	}
	it.i++
	if it.i == it.c.numOps {
		it.err = it.cols.rawLeft()
	}
	return true
}

// checkActionValue is the core's validate_action_and_value: a known action,
// and an increment by an integer.
func checkActionValue(action uint64, typ byte) error {
	switch {
	case action > actMark:
		return fmt.Errorf("unknown action %d", action)
	case action == actIncrement && typ != valInt && typ != valUint:
		return fmt.Errorf("increment by a value of type %d", typ)
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
