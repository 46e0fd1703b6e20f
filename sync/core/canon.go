package core

import (
	"bytes"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Canonical encoding. The 0.5 core saves a document as its ops and, when it
// loads one, rebuilds each change by encoding those ops again: a change
// whose bytes are not what that encoding gives gets another hash, and the
// saved document no longer loads (its heads do not match). So a change from
// outside must be in that canonical form: the encoders below follow the
// core's (columnar/encoding: RleEncoder, DeltaEncoder, BooleanEncoder and
// MaybeBooleanEncoder; ChangeOpsColumns::raw_columns for which columns are
// written), and a change must re-encode from its decoded form to exactly
// its own bytes. Editors write that form (automerge-go and JS 3.x changes
// round-trip, see TestEncoderRoundTrip); a change with unknown columns does
// not (the core drops them when it saves), nor one listing an actor none of
// its ops refers to.

func appendSleb(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// rleEnc is the core's RleEncoder state machine, over values written by
// put (nil is null).
type rleEnc[T comparable] struct {
	out   []byte
	put   func([]byte, T) []byte
	state int // 0 empty, 1 initial null run, 2 null run, 3 lone value, 4 run, 5 literal run
	n     int
	val   T
	lit   []T
}

func (e *rleEnc[T]) flushRun(v T, n int) {
	e.out = appendSleb(e.out, int64(n))
	e.out = e.put(e.out, v)
}

func (e *rleEnc[T]) flushNulls(n int) {
	e.out = appendSleb(e.out, 0)
	e.out = leb128.AppendUint(e.out, uint64(n))
}

func (e *rleEnc[T]) flushLit(vs []T) {
	e.out = appendSleb(e.out, -int64(len(vs)))
	for _, v := range vs {
		e.out = e.put(e.out, v)
	}
}

func (e *rleEnc[T]) null() {
	switch e.state {
	case 0:
		e.state, e.n = 1, 1
	case 1, 2:
		e.n++
	case 3:
		e.flushLit([]T{e.val})
		e.state, e.n = 2, 1
	case 4:
		e.flushRun(e.val, e.n)
		e.state, e.n = 2, 1
	case 5:
		e.flushLit(append(e.lit, e.val))
		e.state, e.n, e.lit = 2, 1, nil
	}
}

func (e *rleEnc[T]) value(v T) {
	switch e.state {
	case 0:
		e.state, e.val = 3, v
	case 3:
		if e.val == v {
			e.state, e.n = 4, 2
		} else {
			e.state, e.lit, e.val = 5, []T{e.val}, v
		}
	case 4:
		if e.val == v {
			e.n++
		} else {
			e.flushRun(e.val, e.n)
			e.state, e.val = 3, v
		}
	case 5:
		if e.val == v {
			e.flushLit(e.lit)
			e.state, e.n, e.lit = 4, 2, nil
		} else {
			e.lit = append(e.lit, e.val)
			e.val = v
		}
	case 1, 2:
		e.flushNulls(e.n)
		e.state, e.val = 3, v
	}
}

func (e *rleEnc[T]) finish() []byte {
	switch e.state {
	case 2:
		e.flushNulls(e.n)
	case 3:
		e.flushLit([]T{e.val})
	case 4:
		e.flushRun(e.val, e.n)
	case 5:
		e.flushLit(append(e.lit, e.val))
	}
	e.state = 0
	return e.out
}

func (e *rleEnc[T]) reset() {
	var zero T
	e.out, e.state, e.n, e.val, e.lit = e.out[:0], 0, 0, zero, e.lit[:0]
}

func (e *boolEnc) reset() { e.out, e.last, e.n, e.any = e.out[:0], false, 0, false }

func newUintEnc() *rleEnc[uint64] { return &rleEnc[uint64]{put: leb128.AppendUint} }
func newIntEnc() *rleEnc[int64]   { return &rleEnc[int64]{put: appendSleb} }
func newStrEnc() *rleEnc[string] {
	return &rleEnc[string]{put: func(b []byte, s string) []byte { return append(leb128.AppendUint(b, uint64(len(s))), s...) }}
}

type deltaEnc struct {
	rle *rleEnc[int64]
	abs int64
}

func newDeltaEnc() *deltaEnc      { return &deltaEnc{rle: newIntEnc()} }
func (e *deltaEnc) value(v int64) { e.rle.value(v - e.abs); e.abs = v }
func (e *deltaEnc) null()         { e.rle.null() }

type boolEnc struct {
	out   []byte
	last  bool
	n     uint64
	maybe bool // all false: empty (MaybeBooleanEncoder)
	any   bool
}

func (e *boolEnc) add(v bool) {
	e.any = e.any || v
	if v == e.last {
		e.n++
		return
	}
	e.out = leb128.AppendUint(e.out, e.n)
	e.last, e.n = v, 1
}

func (e *boolEnc) finish() []byte {
	if e.maybe && !e.any {
		return nil
	}
	if e.n > 0 {
		e.out = leb128.AppendUint(e.out, e.n)
	}
	return e.out
}

// canonEncoder encodes ops into change op columns, one op at a time.
type canonEncoder struct {
	objA, objC, keyA, act, meta, predN, predA *rleEnc[uint64]
	keyC, predC                               *deltaEnc
	keyS, mark                                *rleEnc[string]
	ins, exp                                  *boolEnc
	raw                                       []byte
}

func newCanonEncoder() *canonEncoder {
	return &canonEncoder{
		objA: newUintEnc(), objC: newUintEnc(), keyA: newUintEnc(), act: newUintEnc(), meta: newUintEnc(),
		predN: newUintEnc(), predA: newUintEnc(), keyC: newDeltaEnc(), predC: newDeltaEnc(),
		keyS: newStrEnc(), mark: newStrEnc(), ins: &boolEnc{}, exp: &boolEnc{maybe: true},
	}
}

// reset empties the encoder for the next change, keeping its buffers.
func (e *canonEncoder) reset() {
	for _, u := range []*rleEnc[uint64]{e.objA, e.objC, e.keyA, e.act, e.meta, e.predN, e.predA} {
		u.reset()
	}
	e.keyC.rle.reset()
	e.predC.rle.reset()
	e.keyC.abs, e.predC.abs = 0, 0
	e.keyS.reset()
	e.mark.reset()
	e.ins.reset()
	e.exp.reset()
	e.raw = e.raw[:0]
}

func (e *canonEncoder) add(op *changeOp) {
	if op.isRoot() {
		e.objA.null()
		e.objC.null()
	} else {
		e.objA.value(op.obj.actor)
		e.objC.value(op.obj.ctr)
	}
	switch op.key.kind {
	case keyProp:
		e.keyA.null()
		e.keyC.null()
		e.keyS.value(op.key.prop)
	case keyHead:
		e.keyA.null()
		e.keyC.value(0)
		e.keyS.null()
	case keyElem:
		e.keyA.value(op.key.elem.actor)
		e.keyC.value(int64(op.key.elem.ctr))
		e.keyS.null()
	}
	e.ins.add(op.insert)
	e.act.value(op.action)
	e.meta.value(uint64(len(op.val.raw))<<4 | uint64(op.val.typ))
	e.raw = append(e.raw, op.val.raw...)
	e.predN.value(uint64(len(op.preds)))
	for _, p := range op.preds {
		e.predA.value(p.actor)
		e.predC.value(int64(p.ctr))
	}
	e.exp.add(op.expand)
	if op.hasMark {
		e.mark.value(op.markName)
	} else {
		e.mark.null()
	}
}

// columns finishes the encoding: the non-empty columns, in order.
func (e *canonEncoder) columns() []column {
	all := []column{
		{1, e.objA.finish()}, {2, e.objC.finish()},
		{17, e.keyA.finish()}, {19, e.keyC.rle.finish()}, {21, e.keyS.finish()},
		{52, e.ins.finish()}, {66, e.act.finish()}, {86, e.meta.finish()}, {87, e.raw},
		{112, e.predN.finish()}, {113, e.predA.finish()}, {115, e.predC.rle.finish()},
		{148, e.exp.finish()}, {165, e.mark.finish()},
	}
	cols := all[:0]
	for _, c := range all {
		if len(c.data) > 0 {
			cols = append(cols, c)
		}
	}
	return cols
}

// appendChangeData encodes a change's data from its header fields and op
// columns.
func appendChangeData(b []byte, c *changeChunk, cols []column) []byte {
	b = appendHashes(b, c.deps)
	b = append(leb128.AppendUint(b, uint64(len(c.actor))), c.actor...)
	b = leb128.AppendUint(b, c.seq)
	b = leb128.AppendUint(b, c.startOp)
	b = appendSleb(b, c.time)
	b = append(leb128.AppendUint(b, uint64(len(c.message))), c.message...)
	b = leb128.AppendUint(b, uint64(len(c.others)))
	for _, o := range c.others {
		b = append(leb128.AppendUint(b, uint64(len(o))), o...)
	}
	b = leb128.AppendUint(b, uint64(len(cols)))
	for _, col := range cols {
		b = leb128.AppendUint(b, uint64(col.spec))
		b = leb128.AppendUint(b, uint64(len(col.data)))
	}
	for _, col := range cols {
		b = append(b, col.data...)
	}
	return append(b, c.extra...)
}

// canonical reports whether c's data is what encoding its decoded fields
// and ops (given to e) gives.
func canonical(c *changeChunk, e *canonEncoder) bool {
	data := appendChangeData(nil, c, e.columns())
	r := &reader{b: c.raw}
	ch, err := readChunk(r)
	return err == nil && bytes.Equal(ch.data, data)
}
