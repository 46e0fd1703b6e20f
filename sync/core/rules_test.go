package core

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Hand-built changes against a hand-built document, one per rule.

var (
	actorA = bytes.Repeat([]byte{0xaa}, 16)
	actorB = bytes.Repeat([]byte{0xbb}, 16)
	actorC = bytes.Repeat([]byte{0xcc}, 16)
)

func prop(k string) opKey    { return opKey{kind: keyProp, prop: k} }
func elem(a, c uint64) opKey { return opKey{kind: keyElem, elem: ref{actor: a, ctr: c}} }
func head() opKey            { return opKey{kind: keyHead} }

// baseChange is actor A's first change: ops 1@A..7@A are a map (m), a list
// (l), a text (t), an element of each sequence, a counter and a map key.
func baseChange() *testChange {
	return &testChange{actor: actorA, seq: 1, startOp: 1, time: 1, ops: []changeOp{
		{key: prop("m"), action: actMakeMap},
		{key: prop("l"), action: actMakeList},
		{key: prop("t"), action: actMakeText},
		{obj: ref{0, 2}, key: head(), insert: true, action: actSet, val: vStr("x")},
		{obj: ref{0, 3}, key: head(), insert: true, action: actSet, val: vStr("h")},
		{key: prop("c"), action: actSet, val: vCounter(1)},
		{obj: ref{0, 1}, key: prop("k"), action: actSet, val: vStr("v")},
	}}
}

// changeB is a change by B on top of the base; actor index 1 is A (listed
// when an op refers to it).
func changeB(ops ...changeOp) *testChange {
	c := &testChange{deps: []Hash{baseChange().hash()}, actor: actorB, seq: 1, startOp: 8, time: 2, ops: ops}
	for _, op := range ops {
		refs := append(slices.Clone(op.preds), op.obj, op.key.elem)
		if slices.ContainsFunc(refs, func(r ref) bool { return r.actor > 0 }) {
			c.others = [][]byte{actorA}
		}
	}
	return c
}

func baseDoc(t testing.TB) *Doc {
	t.Helper()
	d, err := Load(nil, [][]byte{baseChange().chunk()})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func messageOf(chunks ...[]byte) []byte {
	b := []byte{0x42, 0, 0, 0}
	b = leb128.AppendUint(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = append(leb128.AppendUint(b, uint64(len(c))), c...)
	}
	return b
}

// refuse checks that d refuses a message of the chunks with an
// *InvalidChangeError saying want, and is unchanged.
func refuse(t *testing.T, d *Doc, want string, chunks ...[]byte) error {
	t.Helper()
	before := d.Heads()
	_, err := d.NewSyncState().Receive(messageOf(chunks...))
	var ice *InvalidChangeError
	switch {
	case err == nil:
		t.Fatalf("accepted; want %q", want)
	case !errors.Is(err, ErrBadSyncMessage) || !errors.As(err, &ice):
		t.Fatalf("error %v is not an ErrBadSyncMessage with an *InvalidChangeError", err)
	case !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not say %q", err, want)
	}
	if !slices.Equal(d.Heads(), before) || d.Pending() != 0 {
		t.Fatal("a refused message changed the document")
	}
	return err
}

func accept(t *testing.T, d *Doc, chunks ...[]byte) []Change {
	t.Helper()
	out, err := d.NewSyncState().Receive(messageOf(chunks...))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	return out
}

func TestBaseIsValid(t *testing.T) {
	d := baseDoc(t)
	set := changeB(changeOp{obj: ref{1, 1}, key: prop("k"), action: actSet, val: vStr("w"), preds: []ref{{1, 7}}})
	if out := accept(t, d, set.chunk()); len(out) != 1 || out[0].Hash != set.hash() {
		t.Fatalf("returned %v", out)
	}
	if err := d.Automerge().RootMap(); err == nil {
		t.Fatal("no root")
	}
}

// ruleCase is a change that breaks one rule, and what its refusal says
// (nothing: it is accepted).
type ruleCase struct {
	name string
	c    *testChange
	want string
}

func TestChangeRules(t *testing.T) {
	for _, tc := range changeRuleCases() {
		t.Run(tc.name, func(t *testing.T) {
			refuse(t, baseDoc(t), tc.want, tc.c.chunk())
		})
	}
}

// changeRuleCases are changes on top of the base that break one of the
// document rules each. internal/hostile sends them over real sockets
// (TestHostileFixtures writes them out).
func changeRuleCases() []ruleCase {
	big := uint64(math.MaxUint32) + 1
	set := func(obj ref, k opKey) changeOp { return changeOp{obj: obj, key: k, action: actSet, val: vInt(1)} }
	withOthers := func(c *testChange, others ...[]byte) *testChange { c.others = others; return c }
	return []ruleCase{
		{"object counter over 32 bits", changeB(set(ref{1, big}, prop("k"))), "object counter 4294967296 overflows 32 bits"},
		{"element counter over 32 bits", changeB(set(ref{1, 2}, elem(1, big))), "element counter 4294967296 overflows 32 bits"},
		{"pred counter over 32 bits", changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{1, big}}}), "pred counter 4294967296 overflows 32 bits"},
		{"object actor index", changeB(set(ref{5, 1}, prop("k"))), "object actor index 5, but the change has 2 actors"},
		{"element actor index", changeB(set(ref{1, 2}, elem(7, 4))), "element actor index 7"},
		{"pred actor index", changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{9, 6}}}), "pred actor index 9"},
		{"map key on a list", changeB(set(ref{1, 2}, prop("p"))), `map key "p" on a sequence object`},
		{"map key on a text", changeB(set(ref{1, 3}, prop("p"))), `map key "p" on a sequence object`},
		{"element key on a map", changeB(set(ref{1, 1}, elem(1, 4))), "sequence key on a map object"},
		{"element key on the root", changeB(set(ref{}, elem(1, 4))), "sequence key on a map object"},
		{"insert with a map key", changeB(changeOp{key: prop("k"), insert: true, action: actSet, val: vInt(1)}), "insert with a map key"},
		{"mark on a map", changeB(changeOp{obj: ref{1, 1}, key: prop("k"), action: actMark, markName: "b", hasMark: true}), "mark on a map object"},
		{"mark in a list", changeB(changeOp{obj: ref{1, 2}, key: elem(1, 4), insert: true, action: actMark, markName: "b", hasMark: true}), "mark outside a text object"},
		{"mark not inserted", changeB(changeOp{obj: ref{1, 3}, key: elem(1, 5), action: actMark, markName: "b", hasMark: true}), "mark that is not inserted"},
		{"put on a sequence head", changeB(set(ref{1, 2}, head())), "non-insert op on the head of a sequence"},
		{"object that is not an object", changeB(set(ref{1, 6}, prop("k"))), "op on object 6@1, which does not exist"},
		{"element of an unknown actor", withOthers(changeB(set(ref{1, 2}, elem(2, 3))), actorA, actorC), "element 3@2 does not exist"},
		{"pred of an unknown actor", withOthers(changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{2, 3}}}), actorA, actorC), "pred 3@2 does not exist"},
		{"pred not older than the op", changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{1, 10}}}), "pred 10@1 is not older than the op"},
		{"pred of its own op", changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{0, 8}}}), "pred 8@0 is not older than the op"},
		{"element not older than the op", changeB(set(ref{1, 2}, elem(1, 8))), "element 8@1 is not older than the op"},
		{"preds out of order", changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{1, 7}, {1, 6}}}), "preds not in ascending order"},
		{"seq gap", func() *testChange { c := changeB(set(ref{}, prop("q"))); c.seq = 2; return c }(), "seq 2, but the actor's last change is seq 0"},
		{"op IDs reused", &testChange{deps: []Hash{baseChange().hash()}, actor: actorA, seq: 2, startOp: 7, ops: []changeOp{set(ref{}, prop("q"))}}, "start op 7, but the actor's ops already reach 7"},
		{"increment of a non-counter", changeB(changeOp{key: prop("q"), action: actSet, val: vInt(1)}, changeOp{key: prop("q"), action: actIncrement, val: vInt(1), preds: []ref{{0, 8}}}), "increment of no counter"},
		{"increment of nothing", changeB(changeOp{key: prop("c"), action: actIncrement, val: vInt(1)}), "increment of no counter"},
		{"increment by a string", changeB(changeOp{key: prop("c"), action: actIncrement, val: vStr("1"), preds: []ref{{1, 6}}}), "increment by a value of type 6"},
		{"unknown action", changeB(changeOp{key: prop("c"), action: 8}), "unknown action 8"},
		{"float of 4 bytes", changeB(changeOp{key: prop("f"), action: actSet, val: tv(valFloat, []byte{1, 2, 3, 4})}), "float of 4 bytes"},
		{"null with a length", changeB(changeOp{key: prop("f"), action: actSet, val: tv(valNull, []byte{1})}), "value of type 0 with length 1"},
		{"number with extra bytes", changeB(changeOp{key: prop("f"), action: actSet, val: tv(valUint, []byte{1, 0})}), "extra bytes"},
		{"overlong number", changeB(changeOp{key: prop("f"), action: actSet, val: tv(valInt, []byte{0x80, 0})}), "overlong"},
		{"string not UTF-8", changeB(changeOp{key: prop("f"), action: actSet, val: tv(valString, []byte{0xff})}), "not UTF-8"},
		{"key not UTF-8", changeB(changeOp{key: prop("\xff"), action: actSet, val: vInt(1)}), "invalid UTF-8"},
		{"other actors include the actor", withOthers(changeB(set(ref{1, 1}, prop("k"))), actorA, actorB), "the change's actor is among its other actors"},
		{"other actors unsorted", withOthers(changeB(set(ref{1, 1}, prop("k")), set(ref{2, 1}, prop("k"))), actorC, actorA), "other actors not sorted"},
		{"unreferenced other actor", withOthers(changeB(set(ref{1, 1}, prop("k"))), actorA, actorC), "other actor 2 is not referred to"},
		{"start op overflow", func() *testChange {
			c := changeB(set(ref{}, prop("a")), set(ref{}, prop("b")))
			c.startOp = math.MaxUint32
			return c
		}(), "op counters up to 4294967296 overflow 32 bits"},
		{"seq 0", func() *testChange { c := changeB(set(ref{}, prop("a"))); c.seq = 0; return c }(), "seq 0"},
		{"start op 0", func() *testChange { c := changeB(set(ref{}, prop("a"))); c.startOp = 0; return c }(), "start op 0"},
		{"empty actor", func() *testChange { c := changeB(set(ref{}, prop("a"))); c.actor = nil; return c }(), "actor ID of 0 bytes"},
		{"message not UTF-8", func() *testChange { c := changeB(set(ref{}, prop("a"))); c.message = "\xc3"; return c }(), "invalid UTF-8"},
	}
}

// colEdit returns a cols hook that edits the column with spec.
func colEdit(spec colSpec, f func([]byte) []byte) func([]column) []column {
	return func(cols []column) []column {
		for i := range cols {
			if cols[i].spec == spec {
				cols[i].data = f(slices.Clone(cols[i].data))
			}
		}
		return cols
	}
}

func TestColumnRules(t *testing.T) {
	for _, tc := range columnRuleCases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want == "" {
				accept(t, baseDoc(t), tc.c.chunk())
				return
			}
			refuse(t, baseDoc(t), tc.want, tc.c.chunk())
		})
	}
}

// columnRuleCases are changes whose op columns are malformed, one way each;
// the last is accepted.
func columnRuleCases() []ruleCase {
	two := func() *testChange {
		return changeB(changeOp{key: prop("a"), action: actSet, val: vStr("xy")}, changeOp{key: prop("b"), action: actSet, val: vInt(2)})
	}
	with := func(f func([]column) []column) *testChange { c := two(); c.cols = f; return c }
	extra := two()
	extra.extra = []byte{1, 2, 3}
	return []ruleCase{
		{"raw values shorter than the metadata", with(colEdit(87, func(b []byte) []byte { return b[:1] })), "more than the raw value column holds"},
		{"raw values longer than the metadata", with(colEdit(87, func(b []byte) []byte { return append(b, 9) })), "no value's metadata claims"},
		{"action column truncated", with(colEdit(66, func(b []byte) []byte { return b[:len(b)-1] })), "action column: truncated"},
		{"insert column short", with(colEdit(52, func([]byte) []byte { return []byte{1} })), "insert column: unexpected null"},
		{"null action", with(colEdit(66, func([]byte) []byte { return []byte{0, 2} })), "action column: unexpected null"},
		{"key with actor, counter and string", with(func(cols []column) []column {
			return append([]column{{17, []byte{2, 1}}, {19, []byte{2, 1}}}, cols...)
		}), "malformed key"},
		{"object actor without counter", with(func(cols []column) []column { return append([]column{{1, []byte{2, 1}}}, cols...) }), "object actor and counter columns do not come together"},
		{"deflated column", with(func(cols []column) []column { cols[0].spec |= 8; return cols }), "compressed op columns"},
		{"columns out of order", with(func(cols []column) []column { cols[0], cols[1] = cols[1], cols[0]; return cols }), "out of order"},
		{"raw values without metadata", with(func(cols []column) []column {
			return slices.DeleteFunc(cols, func(c column) bool { return c.spec == 86 })
		}), "raw value column"},
		{"group under an object column ID", with(func(cols []column) []column { return append([]column{{0, []byte{1, 0}}}, cols...) }), "group column"},
		{"pred actors outside their group", func() *testChange {
			c := changeB(changeOp{key: prop("c"), action: actSet, val: vInt(1), preds: []ref{{1, 6}}})
			c.cols = func(cols []column) []column {
				return slices.DeleteFunc(cols, func(c column) bool { return c.spec == 112 })
			}
			return c
		}(), "outside its group"},
		{"non-canonical run", with(colEdit(66, func([]byte) []byte { return []byte{0x7e, 1, 1} })), "not in the canonical encoding"},
		{"unknown column", with(func(cols []column) []column { return append(cols, column{0x7f0, []byte{1}}) }), "not in the canonical encoding"},
		{"extra bytes... are kept", extra, ""},
	}
}

// TestUnknownColumnsAreSkipped: the decoder skips columns it does not know,
// as the core does; only the canonical rule (peers, imports) refuses them.
func TestUnknownColumnsAreSkipped(t *testing.T) {
	c := changeB(changeOp{key: prop("a"), action: actSet, val: vStr("xy")})
	c.cols = func(cols []column) []column { return append(cols, column{0x7f5, []byte("zz")}) }
	lim := DefaultLimits()
	dc, err := decodeChangeChunk(c.chunk(), &lim)
	if err != nil {
		t.Fatal(err)
	}
	tx := baseDoc(t).idx.begin()
	if err := (&validator{lim: &lim, level: levelSafety}).change(tx, dc); err != nil {
		t.Fatalf("levelSafety refused an unknown column: %v", err)
	}
}

func TestChunkRules(t *testing.T) {
	ok := changeB(changeOp{key: prop("a"), action: actSet, val: vInt(1)})
	bad := ok.chunk()
	bad[5] ^= 1
	for _, tc := range []struct {
		name  string
		chunk []byte
		want  string
	}{
		{"bad checksum", bad, "bad chunk checksum"},
		{"compressed change", ok.compressed(t), "only uncompressed change chunks"},
		{"document chunk", baseDoc(t).Save(), "only uncompressed change chunks"},
		{"trailing bytes", append(ok.chunk(), 0), "bytes after the change"},
		{"not a chunk", []byte("hello"), "not an Automerge chunk"},
	} {
		t.Run(tc.name, func(t *testing.T) { refuse(t, baseDoc(t), tc.want, tc.chunk) })
	}
}

// opBomb is a change of a few bytes that encodes 2^25 ops in one run.
func opBomb() *testChange {
	c := changeB()
	c.cols = func([]column) []column {
		return []column{{66, append(appendSleb(nil, 1<<25), 1)}} // 2^25 sets
	}
	return c
}

// keyBomb is a change of a few bytes that writes one key a million times.
func keyBomb() *testChange {
	c := changeB()
	c.cols = func([]column) []column {
		n := appendSleb(nil, 1<<20)
		return []column{
			{21, append(slices.Clone(n), append(leb128.AppendUint(nil, 1), 'k')...)}, // key "k"
			{52, leb128.AppendUint(nil, 1<<20)},                                      // no inserts
			{66, append(slices.Clone(n), 3)},                                         // deletes
			{86, append(slices.Clone(n), 0)},                                         // null values
			{112, append(slices.Clone(n), 0)},                                        // no preds
		}
	}
	return c
}

func TestLimits(t *testing.T) {
	t.Run("a run of 2^25 ops in a few bytes", func(t *testing.T) {
		msg := messageOf(opBomb().chunk())
		if len(msg) > 128 {
			t.Fatalf("message of %d bytes", len(msg))
		}
		d := baseDoc(t)
		s := d.NewSyncState()
		start := time.Now()
		allocs := testing.AllocsPerRun(10, func() { _, _ = s.Receive(msg) })
		if _, err := s.Receive(msg); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("got %v", err)
		}
		if allocs > 200 || time.Since(start) > time.Second {
			t.Fatalf("%v allocations, %v", allocs, time.Since(start))
		}
		t.Logf("%d-byte message refused with %.0f allocations", len(msg), allocs)
	})
	t.Run("a million writes to one key in a few bytes", func(t *testing.T) {
		start := time.Now()
		err := refuse(t, baseDoc(t), "limit exceeded", keyBomb().chunk())
		if !errors.Is(err, ErrLimitExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("%v after %v", err, time.Since(start))
		}
	})
	cases := []struct {
		name string
		lim  Limits
		c    []*testChange
	}{
		{"ops per change", Limits{MaxOpsPerChange: 2}, []*testChange{changeB(
			changeOp{key: prop("a"), action: actSet, val: vInt(1)}, changeOp{key: prop("b"), action: actSet, val: vInt(1)},
			changeOp{key: prop("c2"), action: actSet, val: vInt(1)})}},
		{"preds per op", Limits{MaxPredsPerOp: 1}, []*testChange{changeB(changeOp{key: prop("m"), action: actSet, val: vInt(1), preds: []ref{{1, 1}, {1, 2}}})}},
		{"ops per message", Limits{MaxOpsPerMessage: 3}, []*testChange{
			changeB(changeOp{key: prop("a"), action: actSet, val: vInt(1)}, changeOp{key: prop("b"), action: actSet, val: vInt(1)}),
			{deps: nil, actor: actorC, seq: 1, startOp: 1, ops: []changeOp{{key: prop("a"), action: actSet, val: vInt(1)}, {key: prop("b"), action: actSet, val: vInt(1)}}},
		}},
		{"key work", Limits{MaxKeyWork: 10}, []*testChange{func() *testChange {
			c := changeB()
			for i := range 5 {
				op := changeOp{key: prop("k"), action: actSet, val: vInt(1)}
				if i > 0 {
					op.preds = []ref{{0, uint64(7 + i)}}
				}
				c.ops = append(c.ops, op)
			}
			return c
		}()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := baseDoc(t)
			d.SetLimits(tc.lim)
			var chunks [][]byte
			for _, c := range tc.c {
				chunks = append(chunks, c.chunk())
			}
			_, err := d.NewSyncState().Receive(messageOf(chunks...))
			if !errors.Is(err, ErrLimitExceeded) || !errors.Is(err, ErrBadSyncMessage) {
				t.Fatalf("got %v", err)
			}
			d.SetLimits(Limits{})
			if _, err := d.NewSyncState().Receive(messageOf(chunks...)); err != nil {
				t.Fatalf("refused within the default limits: %v", err)
			}
		})
	}
}

func TestLimitsDefaults(t *testing.T) {
	got := Limits{MaxOpsPerChange: 5, MaxPredsPerOp: -1}.withDefaults()
	want := DefaultLimits()
	want.MaxOpsPerChange = 5
	if got != want {
		t.Fatalf("got %+v", got)
	}
}
