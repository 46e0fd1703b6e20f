package core

import (
	"bytes"
	"compress/flate"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// A test encoder for document chunks, and one test per document rule.

type docOp struct {
	id     ref
	obj    ref
	key    opKey
	insert bool
	action uint64
	val    value
	succ   []ref
}

type docChange struct {
	actor, seq, maxOp uint64
	time              int64
	deps              []uint64
}

type testDoc struct {
	actors  [][]byte
	heads   []Hash
	changes []docChange
	ops     []docOp
	suffix  []byte
	// ops and changes, if set, edit the encoded columns.
	opCols, changeCols func([]column) []column
}

func (d *testDoc) columns() (changes, ops []column) {
	ca, seq, maxOp, tm, msg := newUintEnc(), newDeltaEnc(), newDeltaEnc(), newDeltaEnc(), newStrEnc()
	depN, depI, exMeta := newUintEnc(), newDeltaEnc(), newUintEnc()
	for _, c := range d.changes {
		ca.value(c.actor)
		seq.value(int64(c.seq))
		maxOp.value(int64(c.maxOp))
		tm.value(c.time)
		msg.null()
		depN.value(uint64(len(c.deps)))
		for _, dep := range c.deps {
			depI.value(int64(dep))
		}
		exMeta.value(valBytes)
	}
	changes = nonEmpty([]column{{1, ca.finish()}, {3, seq.rle.finish()}, {19, maxOp.rle.finish()}, {35, tm.rle.finish()},
		{53, msg.finish()}, {64, depN.finish()}, {67, depI.rle.finish()}, {86, exMeta.finish()}})
	objA, objC, keyA, keyS, idA, act, meta, sN, sA := newUintEnc(), newUintEnc(), newUintEnc(), newStrEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc(), newUintEnc()
	keyC, idC, sC := newDeltaEnc(), newDeltaEnc(), newDeltaEnc()
	ins, exp, mark := &boolEnc{}, &boolEnc{maybe: true}, newStrEnc()
	var raw []byte
	for _, op := range d.ops {
		if op.obj.ctr == 0 {
			objA.null()
			objC.null()
		} else {
			objA.value(op.obj.actor)
			objC.value(op.obj.ctr)
		}
		switch op.key.kind {
		case keyProp:
			keyA.null()
			keyC.null()
			keyS.value(op.key.prop)
		case keyHead:
			keyA.null()
			keyC.value(0)
			keyS.null()
		case keyElem:
			keyA.value(op.key.elem.actor)
			keyC.value(int64(op.key.elem.ctr))
			keyS.null()
		}
		idA.value(op.id.actor)
		idC.value(int64(op.id.ctr))
		ins.add(op.insert)
		act.value(op.action)
		meta.value(uint64(len(op.val.raw))<<4 | uint64(op.val.typ))
		raw = append(raw, op.val.raw...)
		sN.value(uint64(len(op.succ)))
		for _, s := range op.succ {
			sA.value(s.actor)
			sC.value(int64(s.ctr))
		}
		exp.add(false)
		mark.null()
	}
	ops = nonEmpty([]column{{1, objA.finish()}, {2, objC.finish()}, {17, keyA.finish()}, {19, keyC.rle.finish()},
		{21, keyS.finish()}, {33, idA.finish()}, {35, idC.rle.finish()}, {52, ins.finish()}, {66, act.finish()},
		{86, meta.finish()}, {87, raw}, {128, sN.finish()}, {129, sA.finish()}, {131, sC.rle.finish()},
		{148, exp.finish()}, {165, mark.finish()}})
	if d.changeCols != nil {
		changes = d.changeCols(changes)
	}
	if d.opCols != nil {
		ops = d.opCols(ops)
	}
	return changes, ops
}

func (d *testDoc) chunk() []byte {
	b := leb128.AppendUint(nil, uint64(len(d.actors)))
	for _, a := range d.actors {
		b = append(leb128.AppendUint(b, uint64(len(a))), a...)
	}
	b = appendHashes(b, d.heads)
	changes, ops := d.columns()
	for _, cols := range [][]column{changes, ops} {
		b = leb128.AppendUint(b, uint64(len(cols)))
		for _, c := range cols {
			b = leb128.AppendUint(leb128.AppendUint(b, uint64(c.spec)), uint64(len(c.data)))
		}
	}
	for _, cols := range [][]column{changes, ops} {
		for _, c := range cols {
			b = append(b, c.data...)
		}
	}
	return frameChunk(chunkDocument, append(b, d.suffix...))
}

// baseDocument is the document of baseChange, in the order the core saves it.
func baseDocument() *testDoc {
	a := func(c uint64) ref { return ref{0, c} }
	return &testDoc{
		actors:  [][]byte{actorA},
		heads:   []Hash{baseChange().hash()},
		changes: []docChange{{actor: 0, seq: 1, maxOp: 7, time: 1}},
		ops: []docOp{
			{id: a(6), key: prop("c"), action: actSet, val: vCounter(1)},
			{id: a(2), key: prop("l"), action: actMakeList},
			{id: a(1), key: prop("m"), action: actMakeMap},
			{id: a(3), key: prop("t"), action: actMakeText},
			{id: a(7), obj: a(1), key: prop("k"), action: actSet, val: vStr("v")},
			{id: a(4), obj: a(2), key: head(), insert: true, action: actSet, val: vStr("x")},
			{id: a(5), obj: a(3), key: head(), insert: true, action: actSet, val: vStr("h")},
		},
		suffix: []byte{0},
	}
}

func TestDocumentEncoderMatchesTheCore(t *testing.T) {
	am, err := automerge.Load(baseChange().chunk())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := baseDocument().chunk(), am.Save(); !bytes.Equal(got, want) {
		t.Fatalf("crafted document differs from the core's:\n got %x\nwant %x", got, want)
	}
}

func checkDoc(t *testing.T, doc []byte, lim Limits) error {
	t.Helper()
	lim = lim.withDefaults()
	ch, err := readChunk(&reader{b: doc})
	if err != nil {
		t.Fatal(err)
	}
	_, err = checkDocument(ch, &lim)
	return err
}

func TestDocumentRules(t *testing.T) {
	a := func(c uint64) ref { return ref{0, c} }
	edit := func(f func(*testDoc)) *testDoc { d := baseDocument(); f(d); return d }
	cases := []struct {
		name string
		doc  *testDoc
		want string
	}{
		{"actors not sorted", edit(func(d *testDoc) { d.actors = [][]byte{actorB, actorA} }), "document actors not sorted"},
		{"op actor index", edit(func(d *testDoc) { d.ops[0].id.actor = 3 }), "op actor index 3 of 1"},
		{"op counter over 32 bits", edit(func(d *testDoc) { d.ops[0].id.ctr = math.MaxUint32 + 1 }), "op counter 4294967296"},
		{"object counter over 32 bits", edit(func(d *testDoc) { d.ops[4].obj.ctr = math.MaxUint32 + 1 }), "object counter 4294967296"},
		{"succ actor index", edit(func(d *testDoc) { d.ops[0].succ = []ref{{5, 9}} }), "successor actor index 5"},
		{"increment by a string", edit(func(d *testDoc) { d.ops[0].action, d.ops[0].val = actIncrement, vStr("1") }), "increment by a value of type 6"},
		{"increment by a counter", edit(func(d *testDoc) { d.ops[0].action = actIncrement }), "increment by a value of type 8"},
		{"unknown action", edit(func(d *testDoc) { d.ops[0].action = 9 }), "unknown action 9"},
		{"objects out of order", edit(func(d *testDoc) { d.ops[4], d.ops[5] = d.ops[5], d.ops[4] }), "objects out of order"},
		{"op on an object never made", edit(func(d *testDoc) { d.ops[4].obj = a(6) }), "which no earlier op creates"},
		{"map key on a list", edit(func(d *testDoc) { d.ops[5].key, d.ops[5].insert = prop("p"), false }), `map key "p" on a sequence object`},
		{"element key on a map", edit(func(d *testDoc) { d.ops[4].key = elem(0, 4) }), "sequence op on a map object"},
		{"insert with a map key", edit(func(d *testDoc) { d.ops[4].insert = true }), "insert with a map key"},
		{"map ops out of order", edit(func(d *testDoc) { d.ops[0], d.ops[1] = d.ops[1], d.ops[0] }), "map ops out of order"},
		{"sequence starts with a non-insert", edit(func(d *testDoc) { d.ops[5].insert, d.ops[5].key = false, elem(0, 4) }), "out of its element's place"},
		{"op on another element", edit(func(d *testDoc) {
			d.ops = append(d.ops[:6], docOp{id: a(8), obj: a(2), key: elem(0, 5), action: actSet, val: vInt(1)}, d.ops[6])
			d.changes[0].maxOp = 8
		}), "out of its element's place"},
		{"op ID twice", edit(func(d *testDoc) { d.ops[6].id = a(4) }), "op ID 4@0 appears twice"},
		{"ops not consecutive", edit(func(d *testDoc) { d.changes[0].maxOp = 8 }), "not consecutive up to its max op 8"},
		{"op in no change", edit(func(d *testDoc) { d.changes[0].maxOp = 6 }), "op 7@0 belongs to no change"},
		{"successor not newer", edit(func(d *testDoc) { d.ops[0].succ = []ref{a(2)} }), "successor 2@0 is not newer than the op"},
		{"successors out of order", edit(func(d *testDoc) {
			d.ops[0].succ = []ref{a(9), a(8)}
			d.changes[0].maxOp = 9
		}), "successors not in ascending order"},
		{"seq gap", edit(func(d *testDoc) { d.changes[0].seq = 2 }), "seq 2, but the actor's changes so far reach seq 0"},
		{"change actor index", edit(func(d *testDoc) { d.changes[0].actor = 1 }), "actor index 1 of 1"},
		{"max op going down", edit(func(d *testDoc) {
			d.changes = append(d.changes, docChange{actor: 0, seq: 2, maxOp: 5, deps: []uint64{0}})
		}), "max op 5 below the actor's previous 7"},
		{"dep on a later change", edit(func(d *testDoc) { d.changes[0].deps = []uint64{0} }), "1 deps for change 0"},
		{"malformed head indexes", edit(func(d *testDoc) { d.suffix = []byte{0, 0} }), "malformed head indexes"},
		{"extra bytes of another type", edit(func(d *testDoc) {
			d.changeCols = func(cols []column) []column {
				cols = colEdit(86, func([]byte) []byte { return []byte{0x7f, 1<<4 | valInt} })(cols)
				return append(cols, column{87, []byte{1}})
			}
		}), "extra bytes of value type 4"},
		{"id columns of different lengths", edit(func(d *testDoc) {
			d.opCols = colEdit(35, func(b []byte) []byte { return append(b, 0x7f, 1) })
		}), "id counter column does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.doc.chunk()
			err := checkDoc(t, doc, Limits{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			// Every way in refuses it before the core sees it.
			if _, err := Load(doc, nil); err == nil {
				t.Fatal("Load accepted it")
			}
			if err := NewDoc().Import(doc); err == nil {
				t.Fatal("Import accepted it")
			}
			if _, err := ChunkHashes(doc); err == nil {
				t.Fatal("ChunkHashes accepted it")
			}
		})
	}
}

func TestDocumentLimits(t *testing.T) {
	t.Run("ops", func(t *testing.T) {
		d := baseDocument()
		d.opCols = colEdit(33, func([]byte) []byte { return append(appendSleb(nil, 1<<30), 0) })
		if err := checkDoc(t, d.chunk(), Limits{}); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("got %v", err)
		}
		if err := checkDoc(t, baseDocument().chunk(), Limits{MaxDocumentOps: 6}); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("inflated bytes", func(t *testing.T) {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write(make([]byte, 4<<20))
		w.Close()
		d := baseDocument()
		d.opCols = func(cols []column) []column { return append(cols, column{0x7f0 | 8, buf.Bytes()}) }
		if err := checkDoc(t, d.chunk(), Limits{MaxDecompressedBytes: 1 << 20}); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("got %v", err)
		}
		// Within the limit the unknown (deflated) column is skipped.
		if err := checkDoc(t, d.chunk(), Limits{}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDeflatedDocument: documents saved with compressed columns decode.
func TestDeflatedDocument(t *testing.T) {
	d := automerge.New()
	if err := d.RootMap().Set("t", automerge.NewText(strings.Repeat("some text that compresses ", 200))); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("c"); err != nil {
		t.Fatal(err)
	}
	saved := d.Save()
	cols := 0
	for _, m := range mustColumnMeta(t, saved) {
		if m.spec.deflated() {
			cols++
		}
	}
	if cols == 0 {
		t.Fatal("no deflated columns to test")
	}
	checkSaved(t, saved, hashes(d.Heads()))
}

// mustColumnMeta returns the op column metadata of a saved document.
func mustColumnMeta(t *testing.T, doc []byte) []colMeta {
	t.Helper()
	ch, err := readChunk(&reader{b: doc})
	if err != nil {
		t.Fatal(err)
	}
	r := &reader{b: ch.data}
	for n := r.uleb(); n > 0; n-- {
		readActor(r)
	}
	r.hashes()
	if _, err := readColumnMeta(r); err != nil {
		t.Fatal(err)
	}
	m, err := readColumnMeta(r)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
