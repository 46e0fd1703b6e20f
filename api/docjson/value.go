package docjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/automerge/automerge-go"
)

// A converted value is one of: nil, bool, string, int64, uint64, float64,
// []byte, time.Time, textVal, counterVal, mapVal, listVal.
type (
	textVal    string
	counterVal int64
	listVal    []any
	mapVal     struct {
		keys []string // sorted
		vals map[string]any
	}
)

// decodeJSON parses exactly one JSON value, keeping numbers as json.Number.
func decodeJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON: %v", ErrBadOp, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: invalid JSON: data after the value", ErrBadOp)
	}
	return v, nil
}

// parseValue decodes raw JSON into a converted value.
func parseValue(raw []byte) (any, error) {
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: value is required", ErrBadOp)
	}
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, err
	}
	return convert(v, 1)
}

// convert maps a decoded JSON value to a converted value; depth is the
// nesting level of v (1 for a top-level value).
func convert(v any, depth int) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		return checkString(x)
	case json.Number:
		return convertNumber(x)
	case []any:
		if depth > MaxDepth {
			return nil, fmt.Errorf("%w: value nests deeper than %d levels", ErrBadOp, MaxDepth)
		}
		out := make(listVal, len(x))
		for i, e := range x {
			c, err := convert(e, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, e := range x {
				if tv, ok, err := convertTyped(k, e); ok || err != nil {
					return tv, err
				}
			}
		}
		return convertObject(x, depth)
	default:
		return nil, fmt.Errorf("%w: unsupported JSON value %T", ErrBadOp, v)
	}
}

// convertObject maps a JSON object to a plain map, never a typed value.
func convertObject(x map[string]any, depth int) (mapVal, error) {
	if depth > MaxDepth {
		return mapVal{}, fmt.Errorf("%w: value nests deeper than %d levels", ErrBadOp, MaxDepth)
	}
	out := mapVal{keys: make([]string, 0, len(x)), vals: make(map[string]any, len(x))}
	for k, e := range x {
		if err := checkKey(k); err != nil {
			return mapVal{}, err
		}
		c, err := convert(e, depth+1)
		if err != nil {
			return mapVal{}, err
		}
		out.keys = append(out.keys, k)
		out.vals[k] = c
	}
	sort.Strings(out.keys)
	return out, nil
}

// convertTyped handles the single-key typed values; ok is false when key is
// not one of the reserved names.
func convertTyped(key string, e any) (v any, ok bool, err error) {
	str := func() (string, error) {
		s, isStr := e.(string)
		if !isStr {
			return "", fmt.Errorf("%w: %q needs a string, got %s", ErrBadOp, key, jsonType(e))
		}
		return checkString(s)
	}
	switch key {
	case "$text":
		s, err := str()
		return textVal(s), true, err
	case "$counter":
		n, isNum := e.(json.Number)
		if !isNum {
			return nil, true, fmt.Errorf("%w: %q needs an integer, got %s", ErrBadOp, key, jsonType(e))
		}
		i, err := parseInt64(n)
		return counterVal(i), true, err
	case "$bytes":
		s, err := str()
		if err != nil {
			return nil, true, err
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, true, fmt.Errorf("%w: \"$bytes\" is not standard padded base64: %v", ErrBadOp, err)
		}
		return b, true, nil
	case "$timestamp":
		s, err := str()
		if err != nil {
			return nil, true, err
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, true, fmt.Errorf("%w: \"$timestamp\" is not RFC 3339: %v", ErrBadOp, err)
		}
		return t.UTC(), true, nil
	}
	return nil, false, nil
}

func convertNumber(n json.Number) (any, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil { // only ±Inf can fail here: the decoder checked the syntax
		return nil, fmt.Errorf("%w: number %s is out of range", ErrBadOp, s)
	}
	return f, nil
}

// parseInt64 parses an integer literal (no fraction or exponent) in int64
// range.
func parseInt64(n json.Number) (int64, error) {
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s is not an integer in int64 range", ErrBadOp, n)
	}
	return i, nil
}

func checkString(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%w: string is not valid UTF-8", ErrBadOp)
	}
	return s, nil
}

func checkKey(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty keys are not allowed", ErrBadOp)
	}
	_, err := checkString(k)
	return err
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	default:
		return "an object"
	}
}

// attach returns the detached Automerge object to write for a container or
// text value, or v itself for a scalar (automerge-go writes those directly).
func attach(v any) any {
	switch x := v.(type) {
	case mapVal:
		return automerge.NewMap()
	case listVal:
		return automerge.NewList()
	case textVal:
		return automerge.NewText(string(x))
	case counterVal:
		return automerge.NewCounter(int64(x))
	default:
		return v
	}
}

// fill writes the children of a container value into the object obj that
// attach made for it, after obj was written to the document.
func fill(obj, v any) error {
	switch x := v.(type) {
	case mapVal:
		return fillMap(obj.(*automerge.Map), x)
	case listVal:
		l := obj.(*automerge.List)
		for _, e := range x {
			o := attach(e)
			if err := l.Append(o); err != nil {
				return err
			}
			if err := fill(o, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func fillMap(m *automerge.Map, x mapVal) error {
	for _, k := range x.keys {
		if err := setKey(m, k, x.vals[k]); err != nil {
			return err
		}
	}
	return nil
}

// setKey writes a converted value to m[key].
func setKey(m *automerge.Map, key string, v any) error {
	o := attach(v)
	if err := m.Set(key, o); err != nil {
		return err
	}
	return fill(o, v)
}

// setIndex overwrites l[idx], or inserts before idx when insert is set.
func setIndex(l *automerge.List, idx int, insert bool, v any) error {
	o := attach(v)
	var err error
	if insert {
		err = l.Insert(idx, o)
	} else {
		err = l.Set(idx, o)
	}
	if err != nil {
		return err
	}
	return fill(o, v)
}
