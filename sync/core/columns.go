package core

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Column encodings of the Automerge storage format, as the Rust core
// (rust/automerge@0.5.0, columnar/encoding) reads them. Every decoder here
// is lazy, like the core's: it yields one entry at a time and never
// allocates per entry, so a run that claims 2^40 entries costs nothing until
// something asks for them. Decoders are stricter than the core in one
// respect: LEB128 numbers must be minimal (as every encoder writes them).
//
//   - Unsigned, signed and string columns are run-length encoded: a positive
//     count n is followed by one value repeated n times, a negative count -n
//     by n literal values, and a zero by an unsigned count of nulls.
//   - A delta column is a signed RLE column of differences from the
//     previous non-null value, starting from 0.
//   - A boolean column is a sequence of unsigned counts of alternating
//     values, starting with false.
//   - A value column is a pair: an unsigned RLE column of metadata (type
//     code in the low 4 bits, byte length above) and a raw column holding
//     the values' bytes back to back.

// maxStringLen is the longest string or byte value a column may hold (the
// core's MAX_ALLOCATION).
const maxStringLen = 1_000_000_000

var errNullEntry = errors.New("unexpected null")

// sleb reads a signed LEB128 number, rejecting overlong encodings and values
// over 64 bits, as the core's storage parser does.
func (r *reader) sleb() int64 {
	var v int64
	var prev byte
	for shift := 0; ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c != 0 && c != 0x7f {
			r.fail(errors.New("LEB128 value overflows 64 bits"))
			return 0
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift > 0 && ((c == 0 && prev&0x40 == 0) || (c == 0x7f && prev&0x40 != 0)) {
				r.fail(errors.New("overlong LEB128"))
				return 0
			}
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
		prev = c
	}
}

// rleKind is the type of an RLE column's values.
type rleKind uint8

const (
	rleUint rleKind = iota
	rleInt
	rleString
)

// rle decodes a run-length encoded column.
type rle struct {
	r       reader
	kind    rleKind
	left    uint64 // entries left in the current run
	literal bool
	null    bool
	u       uint64 // the current value, by kind
	i       int64
	s       string
}

func newRLE(b []byte, kind rleKind) rle { return rle{r: reader{b: b}, kind: kind} }

func (d *rle) err() error { return d.r.err }

// next moves to the next entry and reports whether there is one: false
// when the column is exhausted or broken (see err). After next, d.null
// tells a null entry from a value in d.u, d.i or d.s.
func (d *rle) next() bool {
	for d.left == 0 {
		if d.r.err != nil || len(d.r.b) == 0 {
			return false
		}
		n := d.r.sleb()
		switch {
		case d.r.err != nil:
			return false
		case n > 0:
			d.left, d.literal, d.null = uint64(n), false, false
			d.value()
		case n < 0:
			d.left, d.literal, d.null = uint64(-(n+1))+1, true, false
		default:
			d.left, d.literal, d.null = d.r.uleb(), false, true
		}
		if d.r.err != nil {
			return false
		}
	}
	d.left--
	if d.literal {
		d.value()
	}
	return d.r.err == nil
}

func (d *rle) value() {
	switch d.kind {
	case rleUint:
		d.u = d.r.uleb()
	case rleInt:
		d.i = d.r.sleb()
	case rleString:
		d.s = readString(&d.r)
	}
}

// readString reads a length-prefixed UTF-8 string.
func readString(r *reader) string {
	n := r.uleb()
	if r.err == nil && n > maxStringLen {
		r.fail(fmt.Errorf("string of %d bytes", n))
	}
	b := r.take(n)
	if r.err != nil {
		return ""
	}
	if !utf8.Valid(b) {
		r.fail(errors.New("invalid UTF-8 in a string column"))
		return ""
	}
	return string(b)
}

// skip consumes one value without keeping it (for counting).
func (d *rle) skip() {
	switch d.kind {
	case rleUint:
		d.r.uleb()
	case rleInt:
		d.r.sleb()
	case rleString:
		n := d.r.uleb()
		d.r.take(n)
	}
}

// countRLE returns the number of entries in an RLE column without
// decoding them one by one, failing as soon as there are more than max. It
// reads the column exactly as next would, so a column it accepts yields
// that many entries.
func countRLE(b []byte, kind rleKind, max uint64) (uint64, error) {
	d := newRLE(b, kind)
	var total uint64
	for len(d.r.b) > 0 && d.r.err == nil {
		n := d.r.sleb()
		var k uint64
		switch {
		case d.r.err != nil:
		case n > 0:
			k = uint64(n)
			d.skip()
		case n < 0:
			k = uint64(-(n + 1)) + 1
			for j := uint64(0); j < k && d.r.err == nil; j++ {
				if len(d.r.b) == 0 {
					d.r.fail(errShort)
				}
				d.skip()
			}
		default:
			k = d.r.uleb()
		}
		if d.r.err != nil {
			break
		}
		if k > max-total {
			return 0, fmt.Errorf("%w: more than %d entries", ErrLimitExceeded, max)
		}
		total += k
	}
	return total, d.r.err
}

// delta decodes a delta-encoded integer column.
type delta struct {
	rle
	abs int64
}

func newDelta(b []byte) delta { return delta{rle: newRLE(b, rleInt)} }

// next moves to the next entry; the value is d.abs unless d.null. A sum
// that overflows 64 bits (which the core saturates) is an error.
func (d *delta) next() bool {
	if !d.rle.next() {
		return false
	}
	if !d.null {
		if (d.i > 0 && d.abs > math.MaxInt64-d.i) || (d.i < 0 && d.abs < math.MinInt64-d.i) {
			d.r.fail(errors.New("delta column overflows 64 bits"))
			return false
		}
		d.abs += d.i
	}
	return true
}

// boolCol decodes a boolean column.
type boolCol struct {
	r    reader
	val  bool
	left uint64
}

func newBool(b []byte) boolCol { return boolCol{r: reader{b: b}, val: true} }

// next returns the next value and whether there is one.
func (d *boolCol) next() (v, ok bool) {
	for d.left == 0 {
		if d.r.err != nil || len(d.r.b) == 0 {
			return false, false
		}
		d.left = d.r.uleb()
		if d.r.err != nil {
			return false, false
		}
		d.val = !d.val
	}
	d.left--
	return d.val, true
}

// Value type codes (the low 4 bits of a value's metadata). Codes 10 to 15
// are unknown types, kept as raw bytes.
const (
	valNull      = 0
	valFalse     = 1
	valTrue      = 2
	valUint      = 3
	valInt       = 4
	valFloat     = 5
	valString    = 6
	valBytes     = 7
	valCounter   = 8
	valTimestamp = 9
)

// value is one decoded value.
type value struct {
	typ byte   // type code
	raw []byte // its bytes in the raw column
	i   int64  // the number, for valInt, valCounter and valTimestamp
	u   uint64 // the number, for valUint
}

// valueCol decodes a value column (metadata and raw bytes).
type valueCol struct {
	meta rle
	raw  reader
}

func newValueCol(meta, raw []byte) valueCol {
	return valueCol{meta: newRLE(meta, rleUint), raw: reader{b: raw}}
}

func (d *valueCol) err() error {
	if err := d.meta.err(); err != nil {
		return err
	}
	return d.raw.err
}

// next decodes the next value. It reports false when the metadata column
// is exhausted or either column is broken (see err); a null metadata entry
// is an error, as in the core.
func (d *valueCol) next() (value, bool) {
	if !d.meta.next() {
		return value{}, false
	}
	if d.meta.null {
		d.raw.fail(fmt.Errorf("value metadata: %w", errNullEntry))
		return value{}, false
	}
	v := value{typ: byte(d.meta.u & 0x0f)}
	n := d.meta.u >> 4
	switch v.typ {
	case valNull, valFalse, valTrue:
		if n != 0 {
			d.raw.fail(fmt.Errorf("value of type %d with length %d", v.typ, n))
		}
		return v, d.raw.err == nil
	case valFloat:
		if n != 8 {
			d.raw.fail(fmt.Errorf("float of %d bytes", n))
			return v, false
		}
	}
	if n > maxStringLen {
		d.raw.fail(fmt.Errorf("value of %d bytes", n))
		return v, false
	}
	v.raw = d.raw.take(n)
	if d.raw.err != nil {
		d.raw.err = fmt.Errorf("value metadata says %d bytes, more than the raw value column holds", n)
		return v, false
	}
	switch v.typ {
	case valUint, valInt, valCounter, valTimestamp:
		r := reader{b: v.raw}
		if v.typ == valUint {
			v.u = r.uleb()
		} else {
			v.i = r.sleb()
		}
		if r.err == nil && len(r.b) > 0 {
			r.fail(errors.New("extra bytes"))
		}
		if r.err != nil {
			d.raw.fail(fmt.Errorf("number value: %w", r.err))
			return v, false
		}
	case valString:
		if !utf8.Valid(v.raw) {
			d.raw.fail(errors.New("string value is not UTF-8"))
			return v, false
		}
	}
	return v, true
}

// Column types (the low 3 bits of a column specification).
const (
	colGroup     = 0
	colActor     = 1
	colInteger   = 2
	colDelta     = 3
	colBoolean   = 4
	colString    = 5
	colValueMeta = 6
	colValue     = 7
)

// colSpec is a column specification: ID in the bits above 4, deflate flag
// in bit 3, type in the low 3 bits.
type colSpec uint32

func (s colSpec) id() uint32         { return uint32(s) >> 4 }
func (s colSpec) typ() uint32        { return uint32(s) & 7 }
func (s colSpec) deflated() bool     { return s&8 != 0 }
func (s colSpec) normalized() uint32 { return uint32(s) &^ 8 }

// column is one raw column: its specification and its bytes.
type column struct {
	spec colSpec
	data []byte
}

// colMeta is a column's specification and length, before the data is known.
type colMeta struct {
	spec colSpec
	len  uint64
}

// readColumnMeta reads column metadata (a count, then specification and
// length pairs) and checks the layout rules of the core's
// ColumnLayoutParser: normalized specifications strictly increasing, raw
// value columns right after the metadata column of the same ID, no nested
// groups.
func readColumnMeta(r *reader) ([]colMeta, error) {
	n := r.uleb()
	if r.err != nil {
		return nil, r.err
	}
	if n > uint64(len(r.b))/2 {
		return nil, fmt.Errorf("%d columns in %d bytes", n, len(r.b))
	}
	cols := make([]colMeta, 0, n)
	for i := uint64(0); i < n; i++ {
		spec := r.uleb()
		length := r.uleb()
		if r.err != nil {
			return nil, r.err
		}
		if spec > math.MaxUint32 {
			return nil, fmt.Errorf("column specification %d overflows 32 bits", spec)
		}
		c := colMeta{spec: colSpec(spec), len: length}
		if len(cols) > 0 {
			prev := cols[len(cols)-1].spec
			if prev.normalized() >= c.spec.normalized() {
				return nil, fmt.Errorf("columns out of order or repeated (%#x after %#x)", c.spec, prev)
			}
		}
		switch c.spec.typ() {
		case colValue:
			if len(cols) == 0 || cols[len(cols)-1].spec.typ() != colValueMeta || cols[len(cols)-1].spec.id() != c.spec.id() {
				return nil, fmt.Errorf("raw value column %#x without its metadata column", c.spec)
			}
		case colGroup:
			// A group column starts a group; later columns with its ID are
			// its members. A second group of that ID would be nested, which
			// the strictly increasing order already rules out.
		}
		cols = append(cols, c)
	}
	return cols, nil
}

// sliceColumns cuts data into the columns cols describe. It returns the
// columns and whatever data follows them.
func sliceColumns(cols []colMeta, data []byte) ([]column, []byte, error) {
	out := make([]column, len(cols))
	for i, c := range cols {
		if c.len > uint64(len(data)) {
			return nil, nil, fmt.Errorf("column %#x of %d bytes, but only %d bytes left", c.spec, c.len, len(data))
		}
		out[i] = column{spec: c.spec, data: data[:c.len]}
		data = data[c.len:]
	}
	return out, data, nil
}

// colSlot names a known column.
type colSlot struct {
	id, typ uint32
}

// slotDst is where assignColumns puts a known column.
type slotDst struct {
	slot colSlot
	dst  *[]byte
}

// assignColumns places known columns into slots and skips unknown ones, as
// the core does (it logs and ignores a column whose ID and type it does not
// know). Columns with the ID of a group are members of that group when the
// group column is present: group is the ID whose group the caller
// understands, and any member not in slots is an error there, as in the
// core. A group column under an ID that is known but not a group is refused
// (the core would silently swallow the known columns into it).
func assignColumns(cols []column, slots []slotDst, group uint32) error {
	known := func(id uint32) bool {
		for _, s := range slots {
			if s.slot.id == id {
				return true
			}
		}
		return false
	}
	grouped := false // the group column of group was seen
	for _, c := range cols {
		id, typ := c.spec.id(), c.spec.typ()
		if typ == colGroup {
			if id != group && known(id) {
				return fmt.Errorf("group column %#x under a column ID that is not a group", c.spec)
			}
			if id == group {
				grouped = true
			}
		}
		var dst *[]byte
		for _, s := range slots {
			if s.slot == (colSlot{id, typ}) {
				dst = s.dst
				break
			}
		}
		switch {
		case dst != nil && id == group && typ != colGroup && !grouped:
			return fmt.Errorf("column %#x outside its group", c.spec)
		case dst != nil:
			*dst = c.data
		case id == group:
			return fmt.Errorf("unexpected column %#x in a group", c.spec)
		}
	}
	return nil
}
