package core

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"slices"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
)

// A test encoder for change and document chunks. Its column encoders follow
// the Rust core's (rust/automerge@0.5.0 columnar/encoding), so that a change
// it re-encodes from a decoded one has the same bytes; overrides let tests
// craft chunks no encoder would write.

// tv makes a value of a type with raw bytes.
func tv(typ byte, raw []byte) value { return value{typ: typ, raw: raw} }

func vInt(i int64) value     { return tv(valInt, appendSleb(nil, i)) }
func vStr(s string) value    { return tv(valString, []byte(s)) }
func vCounter(i int64) value { return tv(valCounter, appendSleb(nil, i)) }

// testChange is a change for the encoder.
type testChange struct {
	deps    []Hash
	actor   []byte
	seq     uint64
	startOp uint64
	time    int64
	message string
	others  [][]byte
	ops     []changeOp
	extra   []byte
	// cols, if set, edits the encoded columns before they are written: it
	// may change, add or remove columns (kept in the order it leaves them).
	cols func([]column) []column
}

func (c *testChange) columns() []column {
	e := newCanonEncoder()
	for i := range c.ops {
		e.add(&c.ops[i])
	}
	cols := e.columns()
	if c.cols != nil {
		cols = c.cols(cols)
	}
	return cols
}

// data encodes the change's data (the chunk body).
func (c *testChange) data() []byte {
	cc := &changeChunk{deps: c.deps, actor: c.actor, seq: c.seq, startOp: c.startOp, time: c.time,
		message: c.message, others: c.others, extra: c.extra}
	return appendChangeData(nil, cc, c.columns())
}

func (c *testChange) chunk() []byte { return frameChunk(chunkChange, c.data()) }

func (c *testChange) hash() Hash {
	h, _ := chunkHash(c.chunk())
	return h
}

func chunkHash(b []byte) (Hash, error) {
	ch, err := readChunk(&reader{b: b})
	return ch.hash, err
}

// compressed returns the change as a compressed (type 2) chunk.
func (c *testChange) compressed(t testing.TB) []byte {
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	w.Write(c.data())
	w.Close()
	out := frameChunk(chunkCompressed, buf.Bytes())
	sum := sha256.Sum256(c.chunk()[8:])
	copy(out[4:8], sum[:4]) // the checksum is the uncompressed change's
	return out
}

// fromDecoded turns a decoded change back into a testChange.
func fromDecoded(t testing.TB, c *changeChunk) *testChange {
	t.Helper()
	lim := DefaultLimits()
	tc := &testChange{deps: c.deps, actor: c.actor, seq: c.seq, startOp: c.startOp, time: c.time,
		message: c.message, others: c.others, extra: c.extra}
	it := c.ops(&lim)
	for it.next() {
		op := it.op
		op.preds = slices.Clone(op.preds)
		tc.ops = append(tc.ops, op)
	}
	if it.err != nil {
		t.Fatal(it.err)
	}
	return tc
}

// TestEncoderRoundTrip re-encodes every change of the corpora from its
// decoded form and requires the very same bytes: the decoder reads every
// field the encoders write.
func TestEncoderRoundTrip(t *testing.T) {
	lim := DefaultLimits()
	check := func(raw []byte) {
		c, err := decodeChangeChunk(raw, &lim)
		if err != nil {
			t.Fatal(err)
		}
		if got := fromDecoded(t, c).chunk(); !bytes.Equal(got, raw) {
			t.Fatalf("re-encoded change differs:\n got %x\nwant %x", got, raw)
		}
	}
	n := 0
	for _, tr := range loadJSCorpus(t).Traces {
		for _, h := range tr.Changes {
			check(unhex(t, h))
			n++
		}
	}
	tr := newTracer(7, 3)
	if err := tr.run(60); err != nil {
		t.Fatal(err)
	}
	chs, err := tr.docs[0].Changes()
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		check(ch.Save())
		n++
	}
	// Changes of more than 10,000 ops, which the Rust core encodes row by
	// row instead of column by column.
	big := automerge.New()
	txt, list := automerge.NewText(strings.Repeat("héllo ", 3000)), automerge.NewList()
	for _, kv := range []struct {
		k string
		v any
	}{{"t", txt}, {"l", list}} {
		if err := big.RootMap().Set(kv.k, kv.v); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12000 {
		if err := list.Append(int64(i % 5)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := big.Commit("big"); err != nil {
		t.Fatal(err)
	}
	if err := txt.Splice(10, 15000, "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := big.Commit("delete"); err != nil {
		t.Fatal(err)
	}
	chs, err = big.Changes()
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range chs {
		check(ch.Save())
		n++
	}
	t.Logf("%d changes round-trip", n)
}
