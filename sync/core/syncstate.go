package core

import (
	"github.com/automerge/automerge-go"
)

// syncStateType is the first byte of an encoded sync state.
const syncStateType = 0x43

// Save encodes what is worth keeping of the sync state across connections,
// as the Automerge core encodes sync states: the heads both sides are known
// to share. The rest (what is in flight, what the peer said last) belongs
// to one connection and starts afresh on the next.
func (s *SyncState) Save() []byte { return s.s.Save() }

// LoadSyncState resumes a peer's sync state from what Save returned on an
// earlier connection, so that the first exchange covers only what changed
// since. Saved bytes that do not parse as a sync state give a fresh state;
// shared heads the document does not have (a document deleted and created
// again, say) are left out rather than handed to the core.
func (d *Doc) LoadSyncState(saved []byte) *SyncState {
	heads, ok := parseSavedSyncState(saved)
	if !ok {
		return d.NewSyncState()
	}
	known := heads[:0]
	for _, h := range heads {
		if d.Has(h) {
			known = append(known, h)
		}
	}
	b := appendHashes([]byte{syncStateType}, known)
	ss, err := automerge.LoadSyncState(d.core(), b)
	if err != nil {
		return d.NewSyncState()
	}
	return &SyncState{doc: d, s: ss}
}

// parseSavedSyncState reads an encoded sync state: its type byte, then the
// shared heads (a count and 32-byte hashes), and nothing else.
func parseSavedSyncState(b []byte) ([]Hash, bool) {
	if len(b) == 0 || b[0] != syncStateType {
		return nil, false
	}
	r := &reader{b: b[1:]}
	heads := r.hashes()
	if r.err != nil || len(r.b) != 0 {
		return nil, false
	}
	return heads, true
}
