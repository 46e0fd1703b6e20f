package docjson

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/automerge/automerge-go"
)

// pathElem is a map key (isIdx false) or a list index.
type pathElem struct {
	key   string
	idx   int
	isIdx bool
}

func formatPath(path []pathElem) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, e := range path {
		if i > 0 {
			b.WriteByte(',')
		}
		if e.isIdx {
			b.WriteString(strconv.Itoa(e.idx))
		} else {
			k, _ := json.Marshal(e.key)
			b.Write(k)
		}
	}
	b.WriteByte(']')
	return b.String()
}

func parsePath(raw json.RawMessage) ([]pathElem, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: path is required", ErrBadOp)
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: path must be a JSON array, got %s", ErrBadOp, jsonType(v))
	}
	if len(arr) > MaxPathLen {
		return nil, fmt.Errorf("%w: path has %d elements, at most %d allowed", ErrBadOp, len(arr), MaxPathLen)
	}
	path := make([]pathElem, len(arr))
	for i, e := range arr {
		switch x := e.(type) {
		case string:
			if err := checkKey(x); err != nil {
				return nil, fmt.Errorf("path element %d: %w", i, err)
			}
			path[i] = pathElem{key: x}
		case json.Number:
			n, err := strconv.Atoi(string(x))
			if err != nil {
				return nil, fmt.Errorf("%w: path element %d: %s is not an integer index", ErrBadOp, i, x)
			}
			path[i] = pathElem{idx: n, isIdx: true}
		default:
			return nil, fmt.Errorf("%w: path element %d must be a string or an integer, got %s", ErrBadOp, i, jsonType(e))
		}
	}
	return path, nil
}

// resolve walks path from the root and returns the value it names.
func resolve(doc *automerge.Doc, path []pathElem) (*automerge.Value, error) {
	cur := doc.Root()
	for i, e := range path {
		var err error
		if cur, err = step(cur, e); err != nil {
			return nil, fmt.Errorf("at %s: %w", formatPath(path[:i+1]), err)
		}
	}
	return cur, nil
}

// step reads child e of cur, which must exist.
func step(cur *automerge.Value, e pathElem) (*automerge.Value, error) {
	if e.isIdx {
		if cur.Kind() != automerge.KindList {
			return nil, fmt.Errorf("%w: index %d applied to %s, not a list", ErrWrongType, e.idx, kindName(cur.Kind()))
		}
		l := cur.List()
		if n := l.Len(); e.idx < 0 || e.idx >= n {
			return nil, fmt.Errorf("%w: index %d, list has %d elements", ErrPathNotFound, e.idx, n)
		}
		return l.Get(e.idx)
	}
	if cur.Kind() != automerge.KindMap {
		return nil, fmt.Errorf("%w: key %q applied to %s, not a map", ErrWrongType, e.key, kindName(cur.Kind()))
	}
	v, err := cur.Map().Get(e.key)
	if err != nil {
		return nil, err
	}
	if v.IsVoid() {
		return nil, fmt.Errorf("%w: no key %q", ErrPathNotFound, e.key)
	}
	return v, nil
}

// kindName describes a value kind for error messages.
func kindName(k automerge.Kind) string {
	switch k {
	case automerge.KindMap:
		return "a map"
	case automerge.KindList:
		return "a list"
	case automerge.KindText:
		return "text"
	case automerge.KindCounter:
		return "a counter"
	case automerge.KindStr:
		return "a string"
	case automerge.KindInt64, automerge.KindUint64, automerge.KindFloat64:
		return "a number"
	case automerge.KindBool:
		return "a boolean"
	case automerge.KindNull:
		return "null"
	case automerge.KindBytes:
		return "bytes"
	case automerge.KindTime:
		return "a timestamp"
	default:
		return "a value of unknown type"
	}
}
