package docjson

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
)

// canon re-encodes JSON text with sorted keys and exact numbers, so that
// expected and actual renderings compare as strings.
func canon(t *testing.T, s string) string {
	t.Helper()
	v, err := decodeJSON([]byte(s))
	if err != nil {
		t.Fatalf("canon %s: %v", s, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// renderJSON renders doc and marshals the result.
func renderJSON(t *testing.T, doc *automerge.Doc) string {
	t.Helper()
	v, err := Render(doc)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal rendering: %v", err)
	}
	return string(b)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestRenderKinds(t *testing.T) {
	t.Parallel()
	doc := automerge.New()
	r := doc.RootMap()
	must(t, r.Set("str", "héllo"))
	must(t, r.Set("int_max", int64(math.MaxInt64)))
	must(t, r.Set("int_min", int64(math.MinInt64)))
	must(t, r.Set("uint_max", uint64(math.MaxUint64)))
	must(t, r.Set("float", 2.5))
	must(t, r.Set("float_integral", 3.0))
	must(t, r.Set("nan", math.NaN()))
	must(t, r.Set("inf", math.Inf(-1)))
	must(t, r.Set("true", true))
	must(t, r.Set("false", false))
	must(t, r.Set("null", nil))
	must(t, r.Set("bytes", []byte{0, 1, 2, 0xfe, 0xff}))
	must(t, r.Set("empty_bytes", []byte{}))
	must(t, r.Set("time", time.Date(2024, 5, 1, 13, 0, 0, 123456789, time.FixedZone("CET", 3600))))
	must(t, r.Set("epoch", time.UnixMilli(0)))
	must(t, r.Set("text", automerge.NewText("héllo 😀")))
	must(t, r.Set("counter", automerge.NewCounter(5)))
	c, err := r.Get("counter")
	must(t, err)
	must(t, c.Counter().Inc(3))
	must(t, r.Set("map", map[string]any{"nested": map[string]any{"deep": true}}))
	must(t, r.Set("empty_map", automerge.NewMap()))
	l := automerge.NewList()
	must(t, r.Set("list", l))
	must(t, l.Append(int64(1), []any{"a", []any{}}, map[string]any{"k": "v"}))
	must(t, l.Append(automerge.NewText("t"), automerge.NewCounter(-2)))
	_, err = doc.Commit("init")
	must(t, err)

	got, err := Render(doc)
	must(t, err)
	want := map[string]any{
		"str":            "héllo",
		"int_max":        int64(math.MaxInt64),
		"int_min":        int64(math.MinInt64),
		"uint_max":       uint64(math.MaxUint64),
		"float":          2.5,
		"float_integral": 3.0,
		"nan":            nil,
		"inf":            nil,
		"true":           true,
		"false":          false,
		"null":           nil,
		"bytes":          "AAEC/v8=",
		"empty_bytes":    "",
		"time":           "2024-05-01T12:00:00.123Z",
		"epoch":          "1970-01-01T00:00:00.000Z",
		"text":           "héllo 😀",
		"counter":        int64(8),
		"map":            map[string]any{"nested": map[string]any{"deep": true}},
		"empty_map":      map[string]any{},
		"list":           []any{int64(1), []any{"a", []any{}}, map[string]any{"k": "v"}, "t", int64(-2)},
	}
	for k, w := range want {
		t.Run(k, func(t *testing.T) {
			t.Parallel()
			if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
				t.Errorf("%s = %#v (present %v), want %#v", k, g, ok, w)
			}
		})
	}
	if len(got) != len(want) {
		t.Errorf("rendered %d keys, want %d", len(got), len(want))
	}
	js := renderJSON(t, doc)
	for _, frag := range []string{
		`"int_max":9223372036854775807`, `"int_min":-9223372036854775808`,
		`"uint_max":18446744073709551615`, `"float":2.5`, `"nan":null`,
	} {
		if !strings.Contains(js, frag) {
			t.Errorf("JSON %s lacks %s", js, frag)
		}
	}
}

func TestRenderEmptyDoc(t *testing.T) {
	t.Parallel()
	if got := renderJSON(t, automerge.New()); got != "{}" {
		t.Fatalf("empty doc renders %s", got)
	}
}

func TestRenderAt(t *testing.T) {
	t.Parallel()
	doc := automerge.New()
	h1, err := SetRoot(doc, json.RawMessage(`{"title":{"$text":"v1"},"n":1}`), "v1")
	must(t, err)
	h2, err := Apply(doc, []Op{
		{Op: "splice", Path: raw(`["title"]`), Index: intp(1), Delete: 1, Text: "2"},
		{Op: "set", Path: raw(`["extra"]`), Value: raw(`true`)},
	}, "v2")
	must(t, err)
	other := automerge.New()
	hOther, err := SetRoot(other, raw(`{}`), "elsewhere")
	must(t, err)

	tests := []struct {
		name    string
		heads   []automerge.ChangeHash
		want    string
		wantErr error
	}{
		{"first", []automerge.ChangeHash{h1}, `{"n":1,"title":"v1"}`, nil},
		{"second", []automerge.ChangeHash{h2}, `{"extra":true,"n":1,"title":"v2"}`, nil},
		{"both", []automerge.ChangeHash{h1, h2}, `{"extra":true,"n":1,"title":"v2"}`, nil},
		{"unknown", []automerge.ChangeHash{hOther}, "", ErrUnknownHeads},
		{"one unknown", []automerge.ChangeHash{h1, {1, 2, 3}}, "", ErrUnknownHeads},
		{"none", nil, "", ErrBadHeads},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := RenderAt(doc, tc.heads)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			must(t, err)
			b, _ := json.Marshal(got)
			if string(b) != tc.want {
				t.Fatalf("got %s, want %s", b, tc.want)
			}
		})
	}
	// The document itself is unchanged by rendering history.
	if got := renderJSON(t, doc); got != `{"extra":true,"n":1,"title":"v2"}` {
		t.Fatalf("doc now renders %s", got)
	}
}

func TestHistory(t *testing.T) {
	t.Parallel()
	doc := automerge.New()
	before := time.Now().Add(-time.Second)
	h1, err := SetRoot(doc, raw(`{"a":1}`), "create")
	must(t, err)
	h2, err := Apply(doc, []Op{{Op: "set", Path: raw(`["b"]`), Value: raw(`2`)}}, "")
	must(t, err)
	must(t, doc.RootMap().Set("c", int64(3)))
	h3, err := doc.Commit("untimed", automerge.CommitOptions{Time: &time.Time{}})
	must(t, err)

	hist, err := History(doc)
	must(t, err)
	if len(hist) != 3 {
		t.Fatalf("%d changes, want 3", len(hist))
	}
	want := []struct {
		hash  automerge.ChangeHash
		seq   uint64
		msg   string
		deps  []string
		timed bool
	}{
		{h1, 1, "create", []string{}, true},
		{h2, 2, "", []string{h1.String()}, true},
		{h3, 3, "untimed", []string{h2.String()}, false},
	}
	for i, w := range want {
		c := hist[i]
		if c.Hash != w.hash.String() || c.Seq != w.seq || c.Message != w.msg || !reflect.DeepEqual(c.Deps, w.deps) {
			t.Errorf("change %d = %+v, want hash %s seq %d msg %q deps %v", i, c, w.hash, w.seq, w.msg, w.deps)
		}
		if c.Actor != doc.ActorID() {
			t.Errorf("change %d actor %s, want the doc's actor %s", i, c.Actor, doc.ActorID())
		}
		if w.timed && (c.Time.Before(before.Truncate(time.Millisecond)) || c.Time.After(time.Now()) || c.Time.Location() != time.UTC) {
			t.Errorf("change %d time %v not a recent UTC time", i, c.Time)
		}
		if !w.timed && !c.Time.IsZero() {
			t.Errorf("change %d time %v, want zero", i, c.Time)
		}
	}
	b, err := json.Marshal(hist[0])
	must(t, err)
	var m map[string]any
	must(t, json.Unmarshal(b, &m))
	for _, k := range []string{"hash", "actor", "seq", "time", "message", "deps"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON %s lacks %q", b, k)
		}
	}
	b, err = json.Marshal(hist[2])
	must(t, err)
	if strings.Contains(string(b), `"time"`) {
		t.Errorf("untimed change JSON %s has a time", b)
	}
}
