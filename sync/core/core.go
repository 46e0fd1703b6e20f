// Package core is Tandem's narrow seam over the Automerge core
// (github.com/automerge/automerge-go). Rooms use only what is here, so that
// the core can be replaced, or given a fast path, without touching them.
//
// Nothing here is safe for concurrent use: a room owns its Doc and the sync
// states made from it, and calls them from its own goroutine.
package core

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/automerge/automerge-go"
)

// Hash is an Automerge change hash.
type Hash [32]byte

// Change is one change's hash and raw bytes (a change chunk).
type Change struct {
	Hash Hash
	Data []byte
}

// Doc is an Automerge document.
type Doc struct {
	d *automerge.Doc
}

// NewDoc returns an empty document.
func NewDoc() *Doc { return &Doc{d: automerge.New()} }

// Load builds a document from an optional snapshot (Save output) followed by
// raw change chunks, as a store returns them.
func Load(snapshot []byte, changes [][]byte) (*Doc, error) {
	var d *automerge.Doc
	if len(snapshot) > 0 {
		var err error
		if d, err = automerge.Load(snapshot); err != nil {
			return nil, fmt.Errorf("load snapshot: %w", err)
		}
	} else {
		d = automerge.New()
	}
	if len(changes) > 0 {
		if err := d.LoadIncremental(bytes.Join(changes, nil)); err != nil {
			return nil, fmt.Errorf("load %d logged changes: %w", len(changes), err)
		}
	}
	return &Doc{d: d}, nil
}

// Heads returns the document's current heads.
func (d *Doc) Heads() []Hash { return hashes(d.d.Heads()) }

// Save returns the whole document in Automerge's compressed format.
func (d *Doc) Save() []byte { return d.d.Save() }

// Empty reports whether the document has no changes.
func (d *Doc) Empty() bool { return len(d.d.Heads()) == 0 }

// Has reports whether the change with hash h is part of the document.
func (d *Doc) Has(h Hash) bool {
	_, err := d.d.Change(automerge.ChangeHash(h))
	return err == nil
}

// Automerge exposes the underlying automerge-go document to code that needs
// the full API (the HTTP API's JSON rendering and edits). Callers must hold
// the room's turn.
func (d *Doc) Automerge() *automerge.Doc { return d.d }

// SyncState is the sync protocol state for one peer of one document.
type SyncState struct {
	doc *Doc
	s   *automerge.SyncState
}

// NewSyncState returns a fresh sync state for a peer of d.
func (d *Doc) NewSyncState() *SyncState {
	return &SyncState{doc: d, s: automerge.NewSyncState(d.d)}
}

// ErrBadSyncMessage wraps errors from sync messages that cannot be decoded
// or applied.
var ErrBadSyncMessage = errors.New("invalid sync message")

// Receive applies one sync message from the peer to the document and returns
// the changes it carried (already applied, or queued by the core until their
// dependencies arrive). The returned bytes are what a change log stores.
func (s *SyncState) Receive(msg []byte) ([]Change, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSyncMessage)
	}
	sm, err := s.s.ReceiveMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	chs := sm.Changes()
	if len(chs) == 0 {
		return nil, nil
	}
	out := make([]Change, len(chs))
	for i, c := range chs {
		out[i] = Change{Hash: Hash(c.Hash()), Data: c.Save()}
	}
	return out, nil
}

// Generate returns the next sync message for the peer, or false when there is
// nothing to send.
func (s *SyncState) Generate() ([]byte, bool) {
	sm, ok := s.s.GenerateMessage()
	if !ok {
		return nil, false
	}
	return sm.Bytes(), true
}

func hashes(hs []automerge.ChangeHash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}
