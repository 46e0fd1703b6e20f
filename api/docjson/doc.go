// Package docjson reads and edits Automerge documents as JSON for Tandem's
// HTTP API.
//
// Every function operates on an *automerge.Doc owned by the caller; the
// package starts no goroutines and keeps no state, so callers serialize access
// to a document themselves. Functions that change a document (Apply, SetRoot)
// are all-or-nothing: they either add exactly one new change to the document
// and return its hash, or return an error and leave the document as it was.
// Callers should commit any pending local operations on the document before
// calling them.
//
// # Reading: Automerge → JSON
//
// Render and RenderAt turn the document's root map into Go values that
// encoding/json marshals as follows:
//
//	Automerge            Go value            JSON
//	map                  map[string]any      object
//	list                 []any               array
//	text                 string              string (the current text)
//	counter              int64               number (the current value)
//	int                  int64               number, exact
//	uint                 uint64              number, exact
//	float                float64             number; NaN and ±Inf become null
//	str                  string              string
//	boolean              bool                true / false
//	null                 nil                 null
//	bytes                string              base64, standard alphabet, padded
//	timestamp            string              RFC 3339 in UTC with milliseconds,
//	                                         e.g. "2024-05-01T12:00:00.000Z"
//	unknown types        nil                 null
//
// Integers are rendered as Go integers, never via float64, so values beyond
// 2^53 survive encoding exactly. Reading is lossy: text and str both become
// JSON strings, a float with an integral value (1.0) marshals like an integer,
// and bytes and timestamps become strings.
//
// # Writing: JSON → Automerge
//
// Values in Apply's ops and SetRoot's content are mapped like this:
//
//	JSON                                 Automerge
//	object                               map
//	array                                list
//	string                               str (a scalar string; last writer wins)
//	integer literal in int64 range       int
//	integer literal above int64 range    uint (if it fits in 64 bits)
//	any other number                     float (1.0, 1e3, 2.5 are floats)
//	true / false                         boolean
//	null                                 null
//	{"$text": "<string>"}                text (collaborative string, editable
//	                                     with the "splice" op)
//	{"$counter": <int64>}                counter with that initial value
//	{"$bytes": "<base64>"}               bytes (standard alphabet, padded)
//	{"$timestamp": "<RFC 3339>"}         timestamp (stored with millisecond
//	                                     precision; finer digits are dropped)
//
// An object is a typed value only when "$text", "$counter", "$bytes" or
// "$timestamp" is its single key; every other object, including ones with other
// "$" keys, is a plain map. (So a map whose only key is, say, "$text" cannot be
// written.) A typed value whose payload has the wrong JSON type is ErrBadOp.
// Object keys must be non-empty (Automerge rejects empty keys), and objects
// and arrays may nest at most MaxDepth levels, counting the value itself as
// level 1. Keys of each object are written in sorted order so that equal input
// produces equal operations.
//
// # Text positions
//
// Text positions and lengths ("splice") count Unicode code points, as
// automerge-go's Text does: "😀a" has length 2. Note that Automerge's
// JavaScript API counts UTF-16 code units instead ("😀a" has length 3 there),
// so positions differ for characters outside the Basic Multilingual Plane.
//
// # Errors
//
// Errors caused by the request wrap exactly one of the sentinel errors
// ErrBadOp, ErrPathNotFound, ErrWrongType, ErrOutOfRange, ErrBadHeads or
// ErrUnknownHeads (test with errors.Is); errors from Apply that concern one op
// are an *OpError naming the op's position and path. Any other error is an
// internal failure of the Automerge core.
package docjson

import "errors"

// Sentinel errors. Every error caused by the caller's input wraps one of
// these; use errors.Is to classify.
var (
	// ErrBadOp reports a malformed request: no ops or too many, an unknown op
	// name, a missing or superfluous field, a value that is not valid JSON or
	// uses a typed value incorrectly, an empty key, nesting deeper than
	// MaxDepth, a path longer than MaxPathLen, an attempt to set or delete the
	// root, or (SetRoot) content that is not a JSON object.
	ErrBadOp = errors.New("bad op")
	// ErrPathNotFound reports that a path leads through or to a map key or
	// list index that does not exist.
	ErrPathNotFound = errors.New("path not found")
	// ErrWrongType reports that the value at (or on the way to) a path has
	// the wrong type for the op: a key applied to something that is not a
	// map, an index to something that is not a list, "insert" on a non-list,
	// "splice" on a non-text (including a plain str), or "increment" on a
	// non-counter.
	ErrWrongType = errors.New("wrong type")
	// ErrOutOfRange reports an index or position outside the target: a list
	// index at the end of a set/delete path, an insert index, a splice range,
	// or an increment that would overflow the counter's int64.
	ErrOutOfRange = errors.New("out of range")
	// ErrBadHeads reports a heads string or list that cannot be parsed or is
	// empty.
	ErrBadHeads = errors.New("bad heads")
	// ErrUnknownHeads reports a well-formed change hash that is not in the
	// document.
	ErrUnknownHeads = errors.New("unknown heads")
)

// Limits on the work a single call may request.
const (
	// MaxOps is the most ops one Apply call accepts.
	MaxOps = 1000
	// MaxDepth is the deepest nesting of objects and arrays accepted in an
	// op's value or in SetRoot's content; the value itself is level 1, so
	// [[1]] has depth 2. Typed values ({"$text": …}) are leaves.
	MaxDepth = 64
	// MaxPathLen is the most elements an op's path may have.
	MaxPathLen = 256
	// MaxHeads is the most heads ParseHeads accepts.
	MaxHeads = 128
)
