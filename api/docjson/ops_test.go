package docjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
)

func raw(s string) json.RawMessage { return json.RawMessage(s) }
func intp(i int) *int              { return &i }

const seed = `{
	"todos": [{"title": {"$text": "Buy milk"}, "done": false}, {"title": {"$text": "Walk 😀 dog"}, "done": true}],
	"stats": {"views": {"$counter": 10}, "big": {"$counter": 9223372036854775800}},
	"name": "plain",
	"n": 1
}`

// seeded returns a document initialized from seed.
func seeded(t *testing.T) *automerge.Doc {
	t.Helper()
	doc := automerge.New()
	if _, err := SetRoot(doc, raw(seed), "seed"); err != nil {
		t.Fatalf("SetRoot(seed): %v", err)
	}
	return doc
}

// withSeed returns the canonical seed rendering with key replaced by val
// (JSON), or deleted when val is "".
func withSeed(t *testing.T, edits ...string) string {
	t.Helper()
	v, err := decodeJSON([]byte(seedRendered)) // keeps big integers exact
	must(t, err)
	m := v.(map[string]any)
	for i := 0; i < len(edits); i += 2 {
		if edits[i+1] == "" {
			delete(m, edits[i])
			continue
		}
		m[edits[i]] = json.RawMessage(edits[i+1])
	}
	b, err := json.Marshal(m)
	must(t, err)
	return canon(t, string(b))
}

const seedRendered = `{"n":1,"name":"plain","stats":{"big":9223372036854775800,"views":10},"todos":[{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk 😀 dog"}]}`

func TestApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ops  []Op
		want string // full rendering, canonicalized
	}{
		{"set new key", []Op{{Op: "set", Path: raw(`["owner"]`), Value: raw(`"ann"`)}},
			withSeed(t, "owner", `"ann"`)},
		{"set replaces with object", []Op{{Op: "set", Path: raw(`["name"]`), Value: raw(`{"a":[1,2.5,null,true]}`)}},
			withSeed(t, "name", `{"a":[1,2.5,null,true]}`)},
		{"set list element", []Op{{Op: "set", Path: raw(`["todos",1]`), Value: raw(`"x"`)}},
			withSeed(t, "todos", `[{"done":false,"title":"Buy milk"},"x"]`)},
		{"set nested key", []Op{{Op: "set", Path: raw(`["todos",0,"done"]`), Value: raw(`true`)}},
			withSeed(t, "todos", `[{"done":true,"title":"Buy milk"},{"done":true,"title":"Walk 😀 dog"}]`)},
		{"set typed values", []Op{{Op: "set", Path: raw(`["v"]`), Value: raw(`{
			"text": {"$text": "hi"}, "counter": {"$counter": -4}, "bytes": {"$bytes": "AAEC/v8="},
			"ts": {"$timestamp": "2024-05-01T13:00:00.1234+01:00"}, "int": 9223372036854775807,
			"uint": 18446744073709551615, "float": 1.0, "exp": 1e3, "neg": -0.5, "null": null,
			"dollar": {"$other": 1}, "two": {"$text": "a", "b": 1}}`)}},
			withSeed(t, "v", `{"text":"hi","counter":-4,"bytes":"AAEC/v8=","ts":"2024-05-01T12:00:00.123Z",
			"int":9223372036854775807,"uint":18446744073709551615,"float":1,"exp":1000,"neg":-0.5,"null":null,
			"dollar":{"$other":1},"two":{"$text":"a","b":1}}`)},
		{"delete key", []Op{{Op: "delete", Path: raw(`["name"]`)}}, withSeed(t, "name", "")},
		{"delete list element", []Op{{Op: "delete", Path: raw(`["todos",0]`)}},
			withSeed(t, "todos", `[{"done":true,"title":"Walk 😀 dog"}]`)},
		{"insert at start", []Op{{Op: "insert", Path: raw(`["todos"]`), Index: intp(0), Value: raw(`{"title":{"$text":"new"}}`)}},
			withSeed(t, "todos", `[{"title":"new"},{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk 😀 dog"}]`)},
		{"insert at length", []Op{{Op: "insert", Path: raw(`["todos"]`), Index: intp(2), Value: raw(`[1,[2]]`)}},
			withSeed(t, "todos", `[{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk 😀 dog"},[1,[2]]]`)},
		{"insert appends without index", []Op{
			{Op: "set", Path: raw(`["l"]`), Value: raw(`[]`)},
			{Op: "insert", Path: raw(`["l"]`), Value: raw(`"a"`)},
			{Op: "insert", Path: raw(`["l"]`), Value: raw(`"b"`)},
			{Op: "insert", Path: raw(`["l"]`), Index: intp(1), Value: raw(`"mid"`)},
		}, withSeed(t, "l", `["a","mid","b"]`)},
		{"splice replaces", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(4), Delete: 4, Text: "eggs"}},
			withSeed(t, "todos", `[{"done":false,"title":"Buy eggs"},{"done":true,"title":"Walk 😀 dog"}]`)},
		{"splice counts code points", []Op{{Op: "splice", Path: raw(`["todos",1,"title"]`), Index: intp(5), Delete: 1, Text: "🐕"}},
			withSeed(t, "todos", `[{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk 🐕 dog"}]`)},
		{"splice at end, delete only", []Op{
			{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(8), Text: "!"},
			{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(0), Delete: 4},
		}, withSeed(t, "todos", `[{"done":false,"title":"milk!"},{"done":true,"title":"Walk 😀 dog"}]`)},
		{"empty splice is an empty change", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(0)}},
			withSeed(t)},
		{"increment", []Op{
			{Op: "increment", Path: raw(`["stats","views"]`), Value: raw(`5`)},
			{Op: "increment", Path: raw(`["stats","views"]`), Value: raw(`-20`)},
			{Op: "increment", Path: raw(`["stats","big"]`), Value: raw(`7`)},
		}, withSeed(t, "stats", `{"big":9223372036854775807,"views":-5}`)},
		{"later ops see earlier ones", []Op{
			{Op: "insert", Path: raw(`["todos"]`), Index: intp(0), Value: raw(`{"title":{"$text":"ab"},"c":{"$counter":0}}`)},
			{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(1), Text: "x"},
			{Op: "increment", Path: raw(`["todos",0,"c"]`), Value: raw(`2`)},
			{Op: "delete", Path: raw(`["todos",2]`)},
			{Op: "set", Path: raw(`["todos",1,"done"]`), Value: raw(`"maybe"`)},
		}, withSeed(t, "todos", `[{"c":2,"title":"axb"},{"done":"maybe","title":"Buy milk"}]`)},
		{"max depth accepted", []Op{{Op: "set", Path: raw(`["deep"]`), Value: raw(nested(MaxDepth))}},
			withSeed(t, "deep", nested(MaxDepth))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := seeded(t)
			before := doc.Heads()
			h, err := Apply(doc, tc.ops, "edit "+tc.name)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if heads := doc.Heads(); len(heads) != 1 || heads[0] != h {
				t.Fatalf("heads %v, want [%s]", heads, h)
			}
			ch, err := doc.Change(h)
			must(t, err)
			if ch.Message() != "edit "+tc.name || !reflect.DeepEqual(ch.Dependencies(), before) {
				t.Errorf("change message %q deps %v", ch.Message(), ch.Dependencies())
			}
			if got := renderJSON(t, doc); got != canon(t, tc.want) {
				t.Errorf("got  %s\nwant %s", got, canon(t, tc.want))
			}
			// The edited document survives a save/load round trip.
			loaded, err := automerge.Load(doc.Save())
			must(t, err)
			if !reflect.DeepEqual(loaded.Heads(), doc.Heads()) {
				t.Errorf("loaded heads %v, want %v", loaded.Heads(), doc.Heads())
			}
			if a, b := renderJSON(t, loaded), renderJSON(t, doc); a != b {
				t.Errorf("loaded renders %s, want %s", a, b)
			}
		})
	}
}

// nested returns JSON with depth levels of arrays around 0.
func nested(depth int) string {
	return strings.Repeat("[", depth) + "0" + strings.Repeat("]", depth)
}

func TestApplyErrors(t *testing.T) {
	t.Parallel()
	ok := Op{Op: "set", Path: raw(`["ok"]`), Value: raw(`1`)}
	tooMany := make([]Op, MaxOps+1)
	for i := range tooMany {
		tooMany[i] = ok
	}
	tests := []struct {
		name    string
		ops     []Op
		msg     string
		want    error
		opIndex int    // -1: not an *OpError
		inMsg   string // must appear in the error text
	}{
		// ErrBadOp
		{"no ops", nil, "", ErrBadOp, -1, "no ops"},
		{"too many ops", tooMany, "", ErrBadOp, -1, "1001 ops"},
		{"bad message", []Op{ok}, "\xff", ErrBadOp, -1, "UTF-8"},
		{"unknown op", []Op{ok, {Op: "move", Path: raw(`["a"]`)}}, "", ErrBadOp, 1, `op 1 ("move") at path ["a"]`},
		{"missing path", []Op{{Op: "set", Value: raw(`1`)}}, "", ErrBadOp, 0, "path is required"},
		{"path not array", []Op{{Op: "set", Path: raw(`"a"`), Value: raw(`1`)}}, "", ErrBadOp, 0, "JSON array"},
		{"path float", []Op{{Op: "set", Path: raw(`["todos",1.5]`), Value: raw(`1`)}}, "", ErrBadOp, 0, "integer index"},
		{"path bool", []Op{{Op: "set", Path: raw(`[true]`), Value: raw(`1`)}}, "", ErrBadOp, 0, "string or an integer"},
		{"path empty key", []Op{{Op: "set", Path: raw(`[""]`), Value: raw(`1`)}}, "", ErrBadOp, 0, "empty key"},
		{"path too long", []Op{{Op: "set", Path: raw("[" + strings.Repeat(`"a",`, MaxPathLen) + `"a"]`), Value: raw(`1`)}}, "", ErrBadOp, 0, "at most"},
		{"set root", []Op{{Op: "set", Path: raw(`[]`), Value: raw(`{}`)}}, "", ErrBadOp, 0, "root"},
		{"delete root", []Op{{Op: "delete", Path: raw(`[]`)}}, "", ErrBadOp, 0, "root"},
		{"set without value", []Op{{Op: "set", Path: raw(`["a"]`)}}, "", ErrBadOp, 0, "value is required"},
		{"invalid JSON value", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"a":}`)}}, "", ErrBadOp, 0, "invalid JSON"},
		{"trailing data", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`1 2`)}}, "", ErrBadOp, 0, "after the value"},
		{"empty key in value", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"x":{"":1}}`)}}, "", ErrBadOp, 0, "empty key"},
		{"too deep", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(nested(MaxDepth + 1))}}, "", ErrBadOp, 0, "deeper"},
		{"bad $counter", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"$counter":1.5}`)}}, "", ErrBadOp, 0, "int64"},
		{"bad $text", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"$text":5}`)}}, "", ErrBadOp, 0, "needs a string"},
		{"bad $bytes", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"$bytes":"!!"}`)}}, "", ErrBadOp, 0, "base64"},
		{"bad $timestamp", []Op{{Op: "set", Path: raw(`["a"]`), Value: raw(`{"$timestamp":"yesterday"}`)}}, "", ErrBadOp, 0, "RFC 3339"},
		{"delete with value", []Op{{Op: "delete", Path: raw(`["n"]`), Value: raw(`1`)}}, "", ErrBadOp, 0, "does not take"},
		{"set with index", []Op{{Op: "set", Path: raw(`["n"]`), Value: raw(`1`), Index: intp(0)}}, "", ErrBadOp, 0, "does not take"},
		{"insert with text", []Op{{Op: "insert", Path: raw(`["todos"]`), Value: raw(`1`), Text: "x"}}, "", ErrBadOp, 0, "does not take"},
		{"splice without index", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Text: "x"}}, "", ErrBadOp, 0, "needs \"index\""},
		{"increment without value", []Op{{Op: "increment", Path: raw(`["stats","views"]`)}}, "", ErrBadOp, 0, "integer"},
		{"increment by float", []Op{{Op: "increment", Path: raw(`["stats","views"]`), Value: raw(`1.5`)}}, "", ErrBadOp, 0, "integer"},
		{"increment by string", []Op{{Op: "increment", Path: raw(`["stats","views"]`), Value: raw(`"1"`)}}, "", ErrBadOp, 0, "integer"},
		{"invalid UTF-8 text", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(0), Text: "\xff"}}, "", ErrBadOp, 0, "UTF-8"},
		// ErrPathNotFound
		{"missing key on the way", []Op{{Op: "set", Path: raw(`["nope","x"]`), Value: raw(`1`)}}, "", ErrPathNotFound, 0, `no key "nope"`},
		{"missing index on the way", []Op{{Op: "set", Path: raw(`["todos",5,"title"]`), Value: raw(`1`)}}, "", ErrPathNotFound, 0, "index 5"},
		{"delete missing key", []Op{{Op: "delete", Path: raw(`["nope"]`)}}, "", ErrPathNotFound, 0, `no key "nope"`},
		{"splice missing", []Op{{Op: "splice", Path: raw(`["missing"]`), Index: intp(0)}}, "", ErrPathNotFound, 0, `path ["missing"]`},
		{"increment missing", []Op{{Op: "increment", Path: raw(`["stats","clicks"]`), Value: raw(`1`)}}, "", ErrPathNotFound, 0, "clicks"},
		// ErrWrongType
		{"splice on str", []Op{{Op: "splice", Path: raw(`["name"]`), Index: intp(0), Text: "x"}}, "", ErrWrongType, 0, "$text"},
		{"splice on number", []Op{{Op: "splice", Path: raw(`["n"]`), Index: intp(0), Text: "x"}}, "", ErrWrongType, 0, "a number"},
		{"increment non-counter", []Op{{Op: "increment", Path: raw(`["n"]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "counter"},
		{"insert into map", []Op{{Op: "insert", Path: raw(`["stats"]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "needs a list"},
		{"insert into root", []Op{{Op: "insert", Path: raw(`[]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "needs a list"},
		{"key on str", []Op{{Op: "set", Path: raw(`["name","x"]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "not a map"},
		{"key on list", []Op{{Op: "set", Path: raw(`["todos","0"]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "not a map"},
		{"index on map", []Op{{Op: "set", Path: raw(`["stats",0]`), Value: raw(`1`)}}, "", ErrWrongType, 0, "not a list"},
		{"index into text", []Op{{Op: "delete", Path: raw(`["todos",0,"title",0]`)}}, "", ErrWrongType, 0, "not a list"},
		// ErrOutOfRange
		{"set past end", []Op{{Op: "set", Path: raw(`["todos",2]`), Value: raw(`1`)}}, "", ErrOutOfRange, 0, "index 2"},
		{"delete negative", []Op{{Op: "delete", Path: raw(`["todos",-1]`)}}, "", ErrOutOfRange, 0, "index -1"},
		{"insert past end", []Op{{Op: "insert", Path: raw(`["todos"]`), Index: intp(3), Value: raw(`1`)}}, "", ErrOutOfRange, 0, "insert index 3"},
		{"insert negative", []Op{{Op: "insert", Path: raw(`["todos"]`), Index: intp(-1), Value: raw(`1`)}}, "", ErrOutOfRange, 0, "insert index -1"},
		{"splice past end", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(9)}}, "", ErrOutOfRange, 0, "8 characters"},
		{"splice deletes past end", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(4), Delete: 5}}, "", ErrOutOfRange, 0, "deleting 5"},
		{"splice negative delete", []Op{{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(4), Delete: -1}}, "", ErrOutOfRange, 0, "deleting -1"},
		{"increment overflow", []Op{{Op: "increment", Path: raw(`["stats","big"]`), Value: raw(`8`)}}, "", ErrOutOfRange, 0, "overflows"},
		// The third op fails after two succeeded on the fork.
		{"third op fails", []Op{
			{Op: "set", Path: raw(`["name"]`), Value: raw(`"changed"`)},
			{Op: "insert", Path: raw(`["todos"]`), Index: intp(0), Value: raw(`{"title":{"$text":"x"}}`)},
			{Op: "splice", Path: raw(`["todos",0,"title"]`), Index: intp(2), Text: "y"},
		}, "", ErrOutOfRange, 2, `op 2 ("splice") at path ["todos",0,"title"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := seeded(t)
			heads, content, saved := doc.Heads(), renderJSON(t, doc), doc.Save()
			_, err := Apply(doc, tc.ops, tc.msg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrBadOp, ErrPathNotFound, ErrWrongType, ErrOutOfRange} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("err %v also wraps %v", err, other)
				}
			}
			var oe *OpError
			if isOp := errors.As(err, &oe); isOp != (tc.opIndex >= 0) || (isOp && oe.Index != tc.opIndex) {
				t.Errorf("err %v: OpError %v, want op index %d", err, oe, tc.opIndex)
			}
			if !strings.Contains(err.Error(), tc.inMsg) {
				t.Errorf("err %q lacks %q", err, tc.inMsg)
			}
			// No trace: same heads, same content, no pending operations.
			if !reflect.DeepEqual(doc.Heads(), heads) {
				t.Errorf("heads changed: %v, was %v", doc.Heads(), heads)
			}
			if got := renderJSON(t, doc); got != content {
				t.Errorf("content changed: %s", got)
			}
			if _, err := doc.Commit("probe"); err == nil {
				t.Errorf("doc had uncommitted operations")
			}
			if got := doc.Save(); string(got) != string(saved) {
				t.Errorf("saved bytes changed")
			}
		})
	}
}

func TestApplyAuthorsAsDocActor(t *testing.T) {
	t.Parallel()
	doc := automerge.New()
	must(t, doc.SetActorID("aabbccdd"))
	_, err := SetRoot(doc, raw(`{"a":1}`), "one")
	must(t, err)
	_, err = Apply(doc, []Op{{Op: "set", Path: raw(`["b"]`), Value: raw(`2`)}}, "two")
	must(t, err)
	// The caller can keep writing with the same actor afterwards.
	must(t, doc.RootMap().Set("c", int64(3)))
	_, err = doc.Commit("three")
	must(t, err)
	hist, err := History(doc)
	must(t, err)
	for i, c := range hist {
		if c.Actor != "aabbccdd" || c.Seq != uint64(i+1) {
			t.Errorf("change %d: actor %s seq %d", i, c.Actor, c.Seq)
		}
	}
	loaded, err := automerge.Load(doc.Save())
	must(t, err)
	if !reflect.DeepEqual(loaded.Heads(), doc.Heads()) {
		t.Errorf("loaded heads %v, want %v", loaded.Heads(), doc.Heads())
	}
}

func TestApplyMergesConcurrentHeads(t *testing.T) {
	t.Parallel()
	doc := seeded(t)
	peer, err := doc.Fork()
	must(t, err)
	_, err = Apply(peer, []Op{{Op: "set", Path: raw(`["peer"]`), Value: raw(`true`)}}, "peer")
	must(t, err)
	_, err = Apply(doc, []Op{{Op: "set", Path: raw(`["local"]`), Value: raw(`true`)}}, "local")
	must(t, err)
	_, err = doc.Merge(peer)
	must(t, err)
	if n := len(doc.Heads()); n != 2 {
		t.Fatalf("%d heads after merge, want 2", n)
	}
	two := doc.Heads()
	h, err := Apply(doc, []Op{{Op: "increment", Path: raw(`["stats","views"]`), Value: raw(`1`)}}, "")
	must(t, err)
	ch, err := doc.Change(h)
	must(t, err)
	if len(ch.Dependencies()) != 2 || !reflect.DeepEqual(doc.Heads(), []automerge.ChangeHash{h}) {
		t.Fatalf("deps %v (was %v), heads %v", ch.Dependencies(), two, doc.Heads())
	}
}

func TestSetRoot(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		start   string // "" for a new document
		content string
		want    string
		wantErr error
	}{
		{"nested", "", `{"todos":[{"title":{"$text":"a"},"tags":["x",{"$counter":2}]}],"meta":{"v":1.5,"ok":null}}`,
			`{"meta":{"ok":null,"v":1.5},"todos":[{"tags":["x",2],"title":"a"}]}`, nil},
		{"empty object", "", `{}`, `{}`, nil},
		{"top-level $text is a key", "", `{"$text":"x"}`, `{"$text":"x"}`, nil},
		{"replaces existing", `{"a":1,"b":{"c":2}}`, `{"b":3,"d":[]}`, `{"b":3,"d":[]}`, nil},
		{"array", "", `[1]`, "", ErrBadOp},
		{"string", "", `"x"`, "", ErrBadOp},
		{"null", "", `null`, "", ErrBadOp},
		{"invalid", "", `{"a":`, "", ErrBadOp},
		{"empty", "", ``, "", ErrBadOp},
		{"empty key", "", `{"":1}`, "", ErrBadOp},
		{"too deep", `{"keep":true}`, `{"a":` + nested(MaxDepth) + `}`, "", ErrBadOp},
		{"max depth", "", `{"a":` + nested(MaxDepth-1) + `}`, `{"a":` + nested(MaxDepth-1) + `}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := automerge.New()
			if tc.start != "" {
				_, err := SetRoot(doc, raw(tc.start), "start")
				must(t, err)
			}
			heads, content := doc.Heads(), renderJSON(t, doc)
			h, err := SetRoot(doc, raw(tc.content), "create")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !reflect.DeepEqual(doc.Heads(), heads) || renderJSON(t, doc) != content {
					t.Fatalf("failed SetRoot changed the document")
				}
				return
			}
			must(t, err)
			if !reflect.DeepEqual(doc.Heads(), []automerge.ChangeHash{h}) {
				t.Fatalf("heads %v, want [%s]", doc.Heads(), h)
			}
			if got := renderJSON(t, doc); got != canon(t, tc.want) {
				t.Fatalf("got %s, want %s", got, canon(t, tc.want))
			}
		})
	}
}

func TestOpJSON(t *testing.T) {
	t.Parallel()
	var ops []Op
	must(t, json.Unmarshal([]byte(`[
		{"op":"insert","path":["todos"],"index":0,"value":{"title":{"$text":"hi"}}},
		{"op":"splice","path":["todos",0,"title"],"index":2,"delete":0,"text":"!"},
		{"op":"set","path":["n"],"value":null}
	]`), &ops))
	doc := seeded(t)
	_, err := Apply(doc, ops, "from JSON")
	must(t, err)
	want := withSeed(t, "n", "null", "todos", `[{"title":"hi!"},{"done":false,"title":"Buy milk"},{"done":true,"title":"Walk 😀 dog"}]`)
	if got := renderJSON(t, doc); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func ExampleApply() {
	doc := automerge.New()
	if _, err := SetRoot(doc, json.RawMessage(`{"todos":[]}`), "create"); err != nil {
		panic(err)
	}
	_, err := Apply(doc, []Op{
		{Op: "insert", Path: json.RawMessage(`["todos"]`), Value: json.RawMessage(`{"title":{"$text":"Buy milk"},"done":false}`)},
		{Op: "splice", Path: json.RawMessage(`["todos",0,"title"]`), Index: intp(4), Delete: 4, Text: "eggs"},
	}, "add todo")
	if err != nil {
		panic(err)
	}
	v, _ := Render(doc)
	b, _ := json.Marshal(v)
	fmt.Println(string(b))
	_, err = Apply(doc, []Op{{Op: "increment", Path: json.RawMessage(`["todos",0,"done"]`), Value: json.RawMessage(`1`)}}, "")
	fmt.Println(err)
	// Output:
	// {"todos":[{"done":false,"title":"Buy eggs"}]}
	// docjson: op 0 ("increment") at path ["todos",0,"done"]: wrong type: "increment" needs a counter, found a boolean
}
