package core

import (
	"errors"
	"fmt"
	"slices"
)

// ErrCompactUnsure is returned by Compact for stored bytes it does not take
// as they are: a snapshot with change chunks after its document (Save of a
// document holding changes back), a logged entry that is not plain change
// chunks, or a logged change whose deps are not before it (held for missing
// deps). The caller compacts through Load and Save instead, which decode and
// validate everything and keep held changes.
var ErrCompactUnsure = errors.New("compaction cannot take this document as stored")

// Compact merges the changes a store logged into the store's snapshot, in
// Go, without building the core: the snapshot's changes are rebuilt
// (DocumentChanges), the logged ones follow, and EncodeDocument writes them
// all as one document chunk. The result is checked by rebuilding its
// changes again: they must hash, in order, to exactly the changes that went
// in. The logged changes are not validated again: everything a store holds
// was validated before it was stored (a peer's change by Receive, a REST
// import by Import), and a room validates its stored document again when it
// loads it, before anything asks for compaction.
func Compact(snapshot []byte, changes [][]byte) (snap []byte, heads []Hash, err error) {
	return CompactPaced(snapshot, changes, nil)
}

// CompactPaced is Compact calling pace as it goes: between changes, and
// every few thousand ops, so that pace can hold a long compaction back
// (sleep) to leave the machine to the rooms (see sync/room's compactor).
// A nil pace is Compact.
func CompactPaced(snapshot []byte, changes [][]byte, pace func()) (snap []byte, heads []Hash, err error) {
	var raws [][]byte
	var want []Hash
	have := map[Hash]bool{}
	if len(snapshot) > 0 {
		chunks, err := splitChunks(snapshot)
		if err != nil {
			return nil, nil, fmt.Errorf("compact: snapshot: %w", err)
		}
		if len(chunks) != 1 || chunks[0].ch.typ != chunkDocument {
			return nil, nil, ErrCompactUnsure
		}
		if raws, want, _, err = documentChangesWith(snapshot, unlimited(), true, pace); err != nil {
			return nil, nil, fmt.Errorf("compact: snapshot: %w", err)
		}
		for _, h := range want {
			have[h] = true
		}
	}
	for i, entry := range changes {
		r := &reader{b: entry}
		for len(r.b) > 0 {
			start := r.b
			ch, err := readChunk(r)
			if err != nil {
				return nil, nil, fmt.Errorf("compact: logged change %d: %w", i, err)
			}
			if ch.typ != chunkChange {
				return nil, nil, ErrCompactUnsure
			}
			if have[ch.hash] {
				continue
			}
			dr := &reader{b: ch.data}
			deps := dr.hashes()
			if dr.err != nil {
				return nil, nil, fmt.Errorf("compact: logged change %d: deps: %w", i, dr.err)
			}
			if slices.ContainsFunc(deps, func(h Hash) bool { return !have[h] }) {
				return nil, nil, ErrCompactUnsure
			}
			have[ch.hash] = true
			want = append(want, ch.hash)
			raws = append(raws, start[:len(start)-len(r.b)])
		}
	}
	snap, err = encodeDocument(raws, true, pace)
	if err != nil {
		return nil, nil, fmt.Errorf("compact: %w", err)
	}
	_, got, heads, err := documentChangesWith(snap, unlimited(), false, pace)
	if err != nil {
		return nil, nil, fmt.Errorf("compact: the encoded document does not read back: %w", err)
	}
	if !slices.Equal(got, want) {
		return nil, nil, errors.New("compact: the encoded document reads back as other changes")
	}
	return snap, heads, nil
}
