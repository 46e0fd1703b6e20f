package docjson

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/automerge/automerge-go"
)

// FuzzApply feeds arbitrary op lists to Apply: it must never panic, every
// error must be classified by a sentinel and leave the document untouched,
// and every success must survive save/load.
func FuzzApply(f *testing.F) {
	for _, s := range []string{
		`[{"op":"set","path":["a"],"value":{"$text":"x"}}]`,
		`[{"op":"splice","path":["todos",1,"title"],"index":5,"delete":1,"text":"🐕"}]`,
		`[{"op":"insert","path":["todos"],"index":2,"value":[{"$counter":1},{"$bytes":"AA=="}]}]`,
		`[{"op":"increment","path":["stats","big"],"value":-9223372036854775808}]`,
		`[{"op":"delete","path":["todos",0]},{"op":"set","path":["todos",0,"done"],"value":1e308}]`,
		`[{"op":"set","path":["t"],"value":{"$timestamp":"9999-12-31T23:59:59.999Z"}}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ops []Op
		if json.Unmarshal(data, &ops) != nil {
			return
		}
		doc := automerge.New()
		if _, err := SetRoot(doc, raw(seed), "seed"); err != nil {
			t.Fatal(err)
		}
		heads, content := doc.Heads(), renderJSON(t, doc)
		h, err := Apply(doc, ops, "fuzz")
		if err != nil {
			classified := false
			for _, s := range []error{ErrBadOp, ErrPathNotFound, ErrWrongType, ErrOutOfRange} {
				classified = classified || errors.Is(err, s)
			}
			if !classified {
				t.Fatalf("unclassified error: %v", err)
			}
			if !reflect.DeepEqual(doc.Heads(), heads) || renderJSON(t, doc) != content {
				t.Fatalf("failed Apply changed the document: %v", err)
			}
			return
		}
		loaded, err := automerge.Load(doc.Save())
		if err != nil {
			t.Fatalf("load after Apply: %v", err)
		}
		if !reflect.DeepEqual(loaded.Heads(), []automerge.ChangeHash{h}) || renderJSON(t, loaded) != renderJSON(t, doc) {
			t.Fatalf("round trip differs")
		}
	})
}
