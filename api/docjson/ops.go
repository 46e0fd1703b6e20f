package docjson

import (
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/automerge/automerge-go"
)

// Op is one edit in an Apply request. Its JSON form is, for example,
//
//	{"op": "set",       "path": ["todos", 0, "title"], "value": {"$text": "Buy milk"}}
//	{"op": "delete",    "path": ["todos", 2]}
//	{"op": "insert",    "path": ["todos"], "index": 0, "value": {"done": false}}
//	{"op": "splice",    "path": ["todos", 0, "title"], "index": 4, "delete": 4, "text": "eggs"}
//	{"op": "increment", "path": ["stats", "views"], "value": 1}
//
// Path is a JSON array of map keys (non-empty strings) and list indexes
// (integers), starting at the document's root map. A string element must be
// applied to a map and an integer element to a list; "0" is a key, never an
// index. Every element before the last must exist: a missing key or an index
// outside the list there is ErrPathNotFound, and a key or index applied to a
// value of another type is ErrWrongType.
//
// The ops:
//
//   - "set" (path, value): path's last element names a map key or a list
//     index. On a map the key is created or its value replaced; on a list the
//     index must be an existing element (0 ≤ index < length, else
//     ErrOutOfRange), which is replaced — use "insert" to grow a list. value
//     is any JSON value, mapped as described in the package documentation.
//     The path must not be empty (the root cannot be replaced; see SetRoot).
//   - "delete" (path): removes the map key (ErrPathNotFound if absent) or the
//     list element (ErrOutOfRange if the index is not an element) that
//     path's last element names. The path must not be empty.
//   - "insert" (path, value, optional index): path points at a list; value is
//     inserted before position index, so 0 prepends and the list's length
//     appends (0 ≤ index ≤ length, else ErrOutOfRange). Without index the
//     value is appended.
//   - "splice" (path, index, optional delete and text): path points at a text
//     object (created with {"$text": …}; a plain string is ErrWrongType).
//     Deletes delete characters starting at position index, then inserts text
//     there. Positions count Unicode code points; 0 ≤ index ≤ length and
//     0 ≤ delete ≤ length − index, else ErrOutOfRange.
//   - "increment" (path, value): path points at a counter (created with
//     {"$counter": n}); value is an integer delta in int64 range, possibly
//     negative. A result outside int64 is ErrOutOfRange.
//
// A field an op does not use ("index" on set, delete or increment; "delete"
// or "text" on anything but splice; "value" on delete or splice) must be
// omitted (or zero: "delete": 0 and "text": "" count as omitted), else the op
// is ErrBadOp. An unknown op name is ErrBadOp too.
type Op struct {
	// Op is the operation: "set", "delete", "insert", "splice" or "increment".
	Op string `json:"op"`
	// Path is a JSON array of keys and indexes, e.g. ["todos", 0, "title"].
	Path json.RawMessage `json:"path"`
	// Value is the value for set and insert, and the integer delta for
	// increment.
	Value json.RawMessage `json:"value,omitempty"`
	// Index is the list position for insert (nil appends) and the text
	// position for splice (required).
	Index *int `json:"index,omitempty"`
	// Delete is the number of characters splice removes.
	Delete int `json:"delete,omitempty"`
	// Text is the string splice inserts.
	Text string `json:"text,omitempty"`
}

// OpError is the error Apply returns when one op fails. It wraps (Unwrap) an
// error that wraps one of ErrBadOp, ErrPathNotFound, ErrWrongType or
// ErrOutOfRange — or, rarely, an internal Automerge error.
type OpError struct {
	// Index is the position of the failing op in the ops slice, from 0.
	Index int
	// Op is the op's name as given.
	Op string
	// Path is the op's path as compact JSON, e.g. ["todos",0,"title"].
	Path string
	// Err describes the failure.
	Err error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("docjson: op %d (%q) at path %s: %v", e.Index, e.Op, e.Path, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Apply performs ops in order as a single change with the given commit
// message, and returns the new change's hash, which becomes doc's only head.
// It is all-or-nothing: the ops run on a fork of doc, and only if all of them
// succeed is the resulting change applied to doc; otherwise doc is left
// exactly as it was and the error, an *OpError for a failing op, wraps one of
// the package's sentinel errors. An empty ops list, more than MaxOps ops, or
// a message that is not valid UTF-8 is ErrBadOp.
//
// Later ops see the effects of earlier ones (insert a map, then set a key in
// it). The change is made by doc's actor (doc.ActorID(); set it with
// doc.SetActorID to attribute API edits) and timestamped with the current
// time. A request whose ops change nothing (a splice deleting and inserting
// nothing) still produces an empty change.
func Apply(doc *automerge.Doc, ops []Op, message string) (automerge.ChangeHash, error) {
	if len(ops) == 0 {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: %w: no ops", ErrBadOp)
	}
	if len(ops) > MaxOps {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: %w: %d ops, at most %d allowed", ErrBadOp, len(ops), MaxOps)
	}
	if !utf8.ValidString(message) {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: %w: message is not valid UTF-8", ErrBadOp)
	}
	// Validate every op before touching the document.
	parsed := make([]parsedOp, len(ops))
	for i, op := range ops {
		p, err := parseOp(op)
		if err != nil {
			return automerge.ChangeHash{}, opError(i, op, p.path, err)
		}
		parsed[i] = p
	}
	fork, err := forkForWrite(doc)
	if err != nil {
		return automerge.ChangeHash{}, err
	}
	for i, p := range parsed {
		if err := p.apply(fork); err != nil {
			return automerge.ChangeHash{}, opError(i, ops[i], p.path, err)
		}
	}
	return commitInto(doc, fork, message)
}

// SetRoot replaces the whole content of doc with the JSON object content, as
// a single change with the given message, and returns its hash. Every key of
// content is written (values mapped as in Apply's set) and every other root
// key is deleted; for a new, empty document this initializes it. content must
// be a JSON object (else ErrBadOp); its own keys are always root keys, even a
// single "$text" key. Like Apply it is all-or-nothing.
func SetRoot(doc *automerge.Doc, content json.RawMessage, message string) (automerge.ChangeHash, error) {
	if !utf8.ValidString(message) {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: %w: message is not valid UTF-8", ErrBadOp)
	}
	v, err := decodeJSON(content)
	if err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: content: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: %w: content must be a JSON object, got %s", ErrBadOp, jsonType(v))
	}
	root, err := convertObject(obj, 1)
	if err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: content: %w", err)
	}
	fork, err := forkForWrite(doc)
	if err != nil {
		return automerge.ChangeHash{}, err
	}
	m := fork.RootMap()
	old, err := m.Keys()
	if err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: read root: %w", err)
	}
	for _, k := range old {
		if _, keep := root.vals[k]; !keep {
			if err := m.Delete(k); err != nil {
				return automerge.ChangeHash{}, fmt.Errorf("docjson: delete %q: %w", k, err)
			}
		}
	}
	if err := fillMap(m, root); err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: write content: %w", err)
	}
	return commitInto(doc, fork, message)
}

// forkForWrite returns a copy of doc that writes as doc's actor.
func forkForWrite(doc *automerge.Doc) (*automerge.Doc, error) {
	fork, err := doc.Fork()
	if err != nil {
		return nil, fmt.Errorf("docjson: fork: %w", err)
	}
	if err := fork.SetActorID(doc.ActorID()); err != nil {
		return nil, fmt.Errorf("docjson: set actor: %w", err)
	}
	return fork, nil
}

// commitInto commits fork's pending operations and moves the change into doc.
func commitInto(doc, fork *automerge.Doc, message string) (automerge.ChangeHash, error) {
	h, err := fork.Commit(message, automerge.CommitOptions{AllowEmpty: true})
	if err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: commit: %w", err)
	}
	chs, err := fork.Changes(doc.Heads()...)
	if err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: collect change: %w", err)
	}
	if err := doc.Apply(chs...); err != nil {
		return automerge.ChangeHash{}, fmt.Errorf("docjson: apply change: %w", err)
	}
	return h, nil
}

func opError(i int, op Op, path []pathElem, err error) error {
	var ps string
	if path != nil {
		ps = formatPath(path)
	} else {
		ps = string(op.Path)
		if len(ps) > 100 {
			ps = ps[:100] + "…"
		}
		if ps == "" {
			ps = "(none)"
		}
	}
	name := op.Op
	if len(name) > 32 {
		name = name[:32] + "…"
	}
	return &OpError{Index: i, Op: name, Path: ps, Err: err}
}

// parsedOp is a validated Op.
type parsedOp struct {
	kind   string
	path   []pathElem
	value  any   // set, insert
	delta  int64 // increment
	index  *int
	delete int
	text   string
}

func parseOp(op Op) (parsedOp, error) {
	p := parsedOp{kind: op.Op, index: op.Index, delete: op.Delete, text: op.Text}
	var err error
	if p.path, err = parsePath(op.Path); err != nil {
		return p, err
	}
	unused := func(index, value, splice bool) error {
		switch {
		case index && op.Index != nil:
			return fmt.Errorf("%w: %q does not take \"index\"", ErrBadOp, op.Op)
		case value && len(op.Value) > 0:
			return fmt.Errorf("%w: %q does not take \"value\"", ErrBadOp, op.Op)
		case splice && (op.Delete != 0 || op.Text != ""):
			return fmt.Errorf("%w: %q does not take \"delete\" or \"text\"", ErrBadOp, op.Op)
		}
		return nil
	}
	switch op.Op {
	case "set", "delete":
		if len(p.path) == 0 {
			return p, fmt.Errorf("%w: %q needs a non-empty path (the root cannot be replaced)", ErrBadOp, op.Op)
		}
		if op.Op == "delete" {
			return p, unused(true, true, true)
		}
		if err := unused(true, false, true); err != nil {
			return p, err
		}
		p.value, err = parseValue(op.Value)
		return p, err
	case "insert":
		if err := unused(false, false, true); err != nil {
			return p, err
		}
		p.value, err = parseValue(op.Value)
		return p, err
	case "splice":
		if err := unused(false, true, false); err != nil {
			return p, err
		}
		if op.Index == nil {
			return p, fmt.Errorf("%w: \"splice\" needs \"index\"", ErrBadOp)
		}
		_, err := checkString(op.Text)
		return p, err
	case "increment":
		if err := unused(true, false, true); err != nil {
			return p, err
		}
		if len(op.Value) == 0 {
			return p, fmt.Errorf("%w: \"increment\" needs an integer \"value\"", ErrBadOp)
		}
		v, err := decodeJSON(op.Value)
		if err != nil {
			return p, err
		}
		n, ok := v.(json.Number)
		if !ok {
			return p, fmt.Errorf("%w: \"increment\" value must be an integer, got %s", ErrBadOp, jsonType(v))
		}
		p.delta, err = parseInt64(n)
		return p, err
	default:
		return p, fmt.Errorf("%w: unknown op %q (want set, delete, insert, splice or increment)", ErrBadOp, op.Op)
	}
}

func (p parsedOp) apply(doc *automerge.Doc) error {
	switch p.kind {
	case "set", "delete":
		return p.applyAtParent(doc)
	}
	target, err := resolve(doc, p.path)
	if err != nil {
		return err
	}
	switch p.kind {
	case "insert":
		if target.Kind() != automerge.KindList {
			return fmt.Errorf("%w: \"insert\" needs a list, found %s", ErrWrongType, kindName(target.Kind()))
		}
		l := target.List()
		n := l.Len()
		idx := n
		if p.index != nil {
			idx = *p.index
		}
		if idx < 0 || idx > n {
			return fmt.Errorf("%w: insert index %d, list has %d elements", ErrOutOfRange, idx, n)
		}
		return setIndex(l, idx, true, p.value)
	case "splice":
		if k := target.Kind(); k != automerge.KindText {
			hint := ""
			if k == automerge.KindStr {
				hint = ` (a plain string; write {"$text": …} to make editable text)`
			}
			return fmt.Errorf("%w: \"splice\" needs text, found %s%s", ErrWrongType, kindName(k), hint)
		}
		t := target.Text()
		n, idx := t.Len(), *p.index
		if idx < 0 || idx > n || p.delete < 0 || p.delete > n-idx {
			return fmt.Errorf("%w: splice at %d deleting %d, text has %d characters", ErrOutOfRange, idx, p.delete, n)
		}
		return t.Splice(idx, p.delete, p.text)
	default: // increment
		if target.Kind() != automerge.KindCounter {
			return fmt.Errorf("%w: \"increment\" needs a counter, found %s", ErrWrongType, kindName(target.Kind()))
		}
		c := target.Counter()
		cur, err := c.Get()
		if err != nil {
			return err
		}
		if (p.delta > 0 && cur > math.MaxInt64-p.delta) || (p.delta < 0 && cur < math.MinInt64-p.delta) {
			return fmt.Errorf("%w: counter %d + %d overflows int64", ErrOutOfRange, cur, p.delta)
		}
		return c.Inc(p.delta)
	}
}

// applyAtParent performs set or delete on the element the last path element
// names inside the value the rest of the path names.
func (p parsedOp) applyAtParent(doc *automerge.Doc) error {
	parent, err := resolve(doc, p.path[:len(p.path)-1])
	if err != nil {
		return err
	}
	last := p.path[len(p.path)-1]
	if last.isIdx {
		if parent.Kind() != automerge.KindList {
			return fmt.Errorf("%w: index %d applied to %s, not a list", ErrWrongType, last.idx, kindName(parent.Kind()))
		}
		l := parent.List()
		if n := l.Len(); last.idx < 0 || last.idx >= n {
			return fmt.Errorf("%w: index %d, list has %d elements", ErrOutOfRange, last.idx, n)
		}
		if p.kind == "delete" {
			return l.Delete(last.idx)
		}
		return setIndex(l, last.idx, false, p.value)
	}
	if parent.Kind() != automerge.KindMap {
		return fmt.Errorf("%w: key %q applied to %s, not a map", ErrWrongType, last.key, kindName(parent.Kind()))
	}
	m := parent.Map()
	if p.kind == "delete" {
		v, err := m.Get(last.key)
		if err != nil {
			return err
		}
		if v.IsVoid() {
			return fmt.Errorf("%w: no key %q", ErrPathNotFound, last.key)
		}
		return m.Delete(last.key)
	}
	return setKey(m, last.key, p.value)
}
