package core

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/automerge/automerge-go"
)

// A randomized editing trace with automerge-go: several actors edit maps,
// lists, text and counters, with conflicting writes and deletes, and merge
// each other's documents now and then. (automerge-go has no marks API; the
// JS corpus covers marks.)

type tracer struct {
	rng  *rand.Rand
	docs []*automerge.Doc
}

func newTracer(seed uint64, actors int) *tracer {
	t := &tracer{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for range actors {
		t.docs = append(t.docs, automerge.New())
	}
	return t
}

// target is something an edit can act on.
type target struct {
	m   *automerge.Map
	l   *automerge.List
	txt *automerge.Text
	c   *automerge.Counter
}

// targets lists what is reachable in d (up to a depth).
func (t *tracer) targets(d *automerge.Doc) []target {
	var out []target
	var walk func(v *automerge.Value, depth int)
	walk = func(v *automerge.Value, depth int) {
		if depth > 3 {
			return
		}
		switch v.Kind() {
		case automerge.KindMap:
			m := v.Map()
			out = append(out, target{m: m})
			keys, err := m.Keys() // sorted, so that a seed makes one trace
			if err != nil {
				return
			}
			for _, k := range keys {
				if c, err := m.Get(k); err == nil {
					walk(c, depth+1)
				}
			}
		case automerge.KindList:
			l := v.List()
			out = append(out, target{l: l})
			vals, err := l.Values()
			if err != nil {
				return
			}
			for _, c := range vals {
				walk(c, depth+1)
			}
		case automerge.KindText:
			out = append(out, target{txt: v.Text()})
		case automerge.KindCounter:
			out = append(out, target{c: v.Counter()})
		}
	}
	walk(d.Root(), 0)
	return out
}

var traceKeys = []string{"a", "b", "c", "title", "ünï", "list", "text", "n"}

func (t *tracer) scalar() any {
	switch t.rng.IntN(10) {
	case 0:
		return nil
	case 1:
		return t.rng.IntN(2) == 0
	case 2:
		return int64(t.rng.Uint64())
	case 3:
		return int64(t.rng.IntN(200) - 100)
	case 4:
		return t.rng.Uint64()
	case 5:
		return []float64{0, -1.5, math.Pi, math.Inf(1), 1e300}[t.rng.IntN(5)]
	case 6:
		return t.text(t.rng.IntN(12))
	case 7:
		b := make([]byte, t.rng.IntN(20))
		for i := range b {
			b[i] = byte(t.rng.Uint32())
		}
		return b
	case 8:
		return time.UnixMilli(int64(t.rng.Uint32()))
	}
	return automerge.NewCounter(int64(t.rng.IntN(10)))
}

func (t *tracer) text(n int) string {
	alphabet := []string{"a", "b", "é", "日本", "🙂", " ", "\n", "z"}
	var sb strings.Builder
	for range n {
		sb.WriteString(alphabet[t.rng.IntN(len(alphabet))])
	}
	return sb.String()
}

// value returns a scalar or, sometimes, a new object.
func (t *tracer) value() any {
	switch t.rng.IntN(8) {
	case 0:
		return automerge.NewMap()
	case 1:
		return automerge.NewList()
	case 2:
		return automerge.NewText(t.text(t.rng.IntN(5)))
	}
	return t.scalar()
}

// edit makes one random edit to d.
func (t *tracer) edit(d *automerge.Doc) error {
	ts := t.targets(d)
	tg := ts[t.rng.IntN(len(ts))]
	switch {
	case tg.m != nil:
		key := traceKeys[t.rng.IntN(len(traceKeys))]
		if t.rng.IntN(5) == 0 {
			if _, err := tg.m.Get(key); err == nil {
				if keys, _ := tg.m.Keys(); len(keys) > 0 {
					return tg.m.Delete(keys[t.rng.IntN(len(keys))])
				}
			}
		}
		return tg.m.Set(key, t.value())
	case tg.l != nil:
		n := tg.l.Len()
		switch op := t.rng.IntN(4); {
		case n > 0 && op == 0:
			return tg.l.Delete(t.rng.IntN(n))
		case n > 0 && op == 1:
			return tg.l.Set(t.rng.IntN(n), t.value())
		default:
			vals := []any{t.value()}
			if t.rng.IntN(3) == 0 {
				vals = append(vals, t.scalar(), t.scalar())
			}
			return tg.l.Insert(t.rng.IntN(n+1), vals...)
		}
	case tg.txt != nil:
		n := tg.txt.Len()
		pos := t.rng.IntN(n + 1)
		del := 0
		if n > pos && t.rng.IntN(3) == 0 {
			del = t.rng.IntN(n - pos + 1)
		}
		return tg.txt.Splice(pos, del, t.text(t.rng.IntN(8)))
	case tg.c != nil:
		return tg.c.Inc(int64(t.rng.IntN(21) - 10))
	}
	return nil
}

// run makes steps rounds of edits and merges.
func (t *tracer) run(steps int) error {
	for step := range steps {
		i := t.rng.IntN(len(t.docs))
		d := t.docs[i]
		for range 1 + t.rng.IntN(4) {
			if err := t.edit(d); err != nil {
				return fmt.Errorf("step %d: edit: %w", step, err)
			}
		}
		msg := ""
		if t.rng.IntN(2) == 0 {
			msg = fmt.Sprintf("step %d", step)
		}
		if _, err := d.Commit(msg, automerge.CommitOptions{AllowEmpty: true}); err != nil {
			return fmt.Errorf("step %d: commit: %w", step, err)
		}
		if t.rng.IntN(4) == 0 && len(t.docs) > 1 {
			j := t.rng.IntN(len(t.docs))
			if j != i {
				if _, err := d.Merge(t.docs[j]); err != nil {
					return fmt.Errorf("step %d: merge: %w", step, err)
				}
			}
		}
	}
	// Everyone merges everyone at the end.
	for _, a := range t.docs {
		for _, b := range t.docs {
			if a != b {
				if _, err := a.Merge(b); err != nil {
					return fmt.Errorf("final merge: %w", err)
				}
			}
		}
	}
	return nil
}
