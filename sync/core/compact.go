package core

import (
	"errors"
	"fmt"
	"slices"

	"github.com/automerge/automerge-go"
)

// ErrCompactUnsure is returned by Compact when the heads cannot vouch for
// its result: a logged change the core held back (its deps are missing),
// or stored bytes in a form Compact does not take (a snapshot with change
// chunks after its document, a logged entry that is not plain change
// chunks). The caller compacts through Load and Save instead, which
// decode and validate everything and keep held changes.
var ErrCompactUnsure = errors.New("compaction by heads cannot vouch for this document")

// Compact merges the changes a store logged into the store's snapshot and
// saves the result through the core, without decoding and validating them
// again as Load does: everything a store holds was validated before it was
// stored (a peer's change by Receive, a REST import by Import, a snapshot
// by the compaction that wrote it), and a room validates its stored
// document again when it loads it, before anything asks for compaction.
// That validation is most of Load's cost on a long history (about 20 µs a
// change); what is left is the core applying the changes, saving, and
// loading the saved document once more to check it.
//
// What is checked: the heads the core reaches are the heads the logged
// changes give (their hashes and deps, read in Go, on top of the
// snapshot's heads), so a change the core silently held back is noticed
// (ErrCompactUnsure), and the saved document loads with the same heads.
func Compact(snapshot []byte, changes [][]byte) (snap []byte, heads []Hash, err error) {
	doc := automerge.New()
	if len(snapshot) > 0 {
		chunks, err := splitChunks(snapshot)
		if err != nil {
			return nil, nil, fmt.Errorf("compact: snapshot: %w", err)
		}
		if len(chunks) != 1 || chunks[0].ch.typ != chunkDocument {
			return nil, nil, ErrCompactUnsure
		}
		if doc, err = automerge.Load(snapshot); err != nil {
			return nil, nil, fmt.Errorf("compact: load snapshot: %w", err)
		}
	}
	want := map[Hash]bool{}
	for _, h := range doc.Heads() {
		want[Hash(h)] = true
	}
	size := 0
	for _, raw := range changes {
		size += len(raw)
	}
	var deps []Hash
	buf := make([]byte, 0, size)
	for i, raw := range changes {
		r := &reader{b: raw}
		for len(r.b) > 0 {
			ch, err := readChunk(r)
			if err != nil {
				return nil, nil, fmt.Errorf("compact: logged change %d: %w", i, err)
			}
			if ch.typ != chunkChange {
				return nil, nil, ErrCompactUnsure
			}
			want[ch.hash] = true
			dr := &reader{b: ch.data}
			deps = append(deps, dr.hashes()...)
			if dr.err != nil {
				return nil, nil, fmt.Errorf("compact: logged change %d: deps: %w", i, dr.err)
			}
		}
		buf = append(buf, raw...)
	}
	for _, h := range deps {
		delete(want, h)
	}
	if len(buf) > 0 {
		if err := doc.LoadIncremental(buf); err != nil {
			return nil, nil, fmt.Errorf("compact: apply %d logged changes: %w", len(changes), err)
		}
	}
	heads = hashes(doc.Heads())
	if len(heads) != len(want) || slices.ContainsFunc(heads, func(h Hash) bool { return !want[h] }) {
		return nil, nil, ErrCompactUnsure
	}
	snap = doc.Save()
	check, err := automerge.Load(snap)
	if err != nil {
		return nil, nil, fmt.Errorf("compact: the saved document does not load: %w", err)
	}
	if !slices.Equal(hashes(check.Heads()), heads) {
		return nil, nil, errors.New("compact: the saved document loads with other heads")
	}
	return snap, heads, nil
}
