package docjson

import (
	"encoding/base64"
	"fmt"
	"math"
	"time"

	"github.com/automerge/automerge-go"
)

// timeLayout is RFC 3339 with exactly three fractional digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Render returns the document's root map as JSON-ready Go values (see the
// package documentation for the mapping): map[string]any, []any, string,
// int64, uint64, float64, bool and nil. An empty document renders as an empty
// map. The result shares nothing with doc.
func Render(doc *automerge.Doc) (map[string]any, error) {
	return renderMap(doc.RootMap())
}

// RenderAt renders the document as it was when heads were its heads, like
// Render. Each head must be a change in doc: an unknown one gives an error
// wrapping ErrUnknownHeads, and an empty heads list one wrapping ErrBadHeads.
// Its cost grows with the document's history, not only its size.
func RenderAt(doc *automerge.Doc, heads []automerge.ChangeHash) (map[string]any, error) {
	if err := checkHeads(doc, heads); err != nil {
		return nil, err
	}
	fork, err := doc.Fork(heads...)
	if err != nil {
		return nil, fmt.Errorf("docjson: fork at heads: %w", err)
	}
	return Render(fork)
}

// checkHeads verifies that heads is non-empty and that every head is a change
// in doc, so that unknown hashes never reach the Automerge core.
func checkHeads(doc *automerge.Doc, heads []automerge.ChangeHash) error {
	if len(heads) == 0 {
		return fmt.Errorf("docjson: %w: no heads given", ErrBadHeads)
	}
	for _, h := range heads {
		if _, err := doc.Change(h); err != nil {
			return fmt.Errorf("docjson: %w: %s is not a change in this document", ErrUnknownHeads, h)
		}
	}
	return nil
}

func renderMap(m *automerge.Map) (map[string]any, error) {
	vals, err := m.Values()
	if err != nil {
		return nil, fmt.Errorf("docjson: read map: %w", err)
	}
	out := make(map[string]any, len(vals))
	for k, v := range vals {
		r, err := renderValue(v)
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

func renderList(l *automerge.List) ([]any, error) {
	vals, err := l.Values()
	if err != nil {
		return nil, fmt.Errorf("docjson: read list: %w", err)
	}
	out := make([]any, len(vals))
	for i, v := range vals {
		r, err := renderValue(v)
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// renderValue converts one value. It switches on Kind before calling an
// accessor, because automerge-go's accessors panic on a kind mismatch.
func renderValue(v *automerge.Value) (any, error) {
	switch v.Kind() {
	case automerge.KindMap:
		return renderMap(v.Map())
	case automerge.KindList:
		return renderList(v.List())
	case automerge.KindText:
		s, err := v.Text().Get()
		if err != nil {
			return nil, fmt.Errorf("docjson: read text: %w", err)
		}
		return s, nil
	case automerge.KindCounter:
		n, err := v.Counter().Get()
		if err != nil {
			return nil, fmt.Errorf("docjson: read counter: %w", err)
		}
		return n, nil
	case automerge.KindInt64:
		return v.Int64(), nil
	case automerge.KindUint64:
		return v.Uint64(), nil
	case automerge.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, nil
		}
		return f, nil
	case automerge.KindStr:
		return v.Str(), nil
	case automerge.KindBool:
		return v.Bool(), nil
	case automerge.KindBytes:
		return base64.StdEncoding.EncodeToString(v.Bytes()), nil
	case automerge.KindTime:
		return v.Time().UTC().Format(timeLayout), nil
	default: // KindNull, KindVoid, KindUnknown
		return nil, nil
	}
}

// ChangeInfo describes one change in a document's history.
type ChangeInfo struct {
	// Hash is the change's hash, 64 lowercase hex digits.
	Hash string `json:"hash"`
	// Actor is the ID of the actor that made the change, in hex.
	Actor string `json:"actor"`
	// Seq is 1 for an actor's first change, 2 for its second, and so on.
	Seq uint64 `json:"seq"`
	// Time is the change's timestamp in UTC with millisecond precision; it is
	// the zero time (and omitted from JSON) when the change has none.
	Time time.Time `json:"time,omitzero"`
	// Message is the commit message, "" if none.
	Message string `json:"message"`
	// Deps are the hashes (hex) of the changes this one directly depends on;
	// never nil, so it marshals as [] for the first change.
	Deps []string `json:"deps"`
}

// History lists every change in the document in causal order: each change
// comes after all of its dependencies.
func History(doc *automerge.Doc) ([]ChangeInfo, error) {
	chs, err := doc.Changes()
	if err != nil {
		return nil, fmt.Errorf("docjson: list changes: %w", err)
	}
	out := make([]ChangeInfo, 0, len(chs))
	for _, c := range chs {
		info := ChangeInfo{
			Hash:    c.Hash().String(),
			Actor:   c.ActorID(),
			Seq:     c.ActorSeq(),
			Message: c.Message(),
			Deps:    []string{},
		}
		// automerge-go reports "no timestamp" as the Unix epoch.
		if ts := c.Timestamp(); ts.UnixMilli() != 0 {
			info.Time = ts.UTC()
		}
		for _, d := range c.Dependencies() {
			info.Deps = append(info.Deps, d.String())
		}
		out = append(out, info)
	}
	return out, nil
}
