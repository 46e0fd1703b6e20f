// Package core is Tandem's narrow seam over the Automerge core
// (github.com/automerge/automerge-go). Rooms use only what is here, so that
// the core can be replaced, or given a fast path, without touching them.
//
// Nothing here is safe for concurrent use: a room owns its Doc and the sync
// states made from it, and calls them from its own goroutine.
package core

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

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
	// seqs is the highest change seq per actor that the document holds or
	// has accepted into the core's queue (built on first Receive), and
	// queued the changes accepted whose dependencies have not arrived. They
	// let Receive refuse changes that would crash the core (syncmsg.go).
	seqs   map[string]uint64
	queued map[Hash]uint64
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

// ChangesSince returns the changes the document has that heads do not
// cover, in causal order: after a local edit, the edit's changes.
func (d *Doc) ChangesSince(heads []Hash) ([]Change, error) {
	hs := make([]automerge.ChangeHash, len(heads))
	for i, h := range heads {
		hs[i] = automerge.ChangeHash(h)
	}
	chs, err := d.d.Changes(hs...)
	if err != nil {
		return nil, fmt.Errorf("changes since %d heads: %w", len(heads), err)
	}
	out := make([]Change, len(chs))
	for i, c := range chs {
		out[i] = Change{Hash: Hash(c.Hash()), Data: c.Save()}
		if d.seqs != nil { // keep the seq index current (see admit)
			a := string(mustHex(c.ActorID()))
			d.seqs[a] = max(d.seqs[a], c.ActorSeq())
		}
	}
	return out, nil
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
// the changes it carried that the document did not have (applied now, or
// queued by the core until their dependencies arrive). The returned bytes
// are what a change log stores. A message that is malformed, or whose
// changes do not extend their actors' histories in order, is refused with
// an error wrapping ErrBadSyncMessage and changes nothing.
func (s *SyncState) Receive(msg []byte) ([]Change, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSyncMessage)
	}
	parsed, err := parseSyncMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	fresh, err := s.doc.admit(parsed.changes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	sm, err := s.s.ReceiveMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	if len(fresh) == 0 {
		return nil, nil
	}
	s.doc.settle(fresh)
	byHash := make(map[Hash][]byte, len(fresh))
	for _, c := range sm.Changes() {
		byHash[Hash(c.Hash())] = c.Save()
	}
	out := make([]Change, 0, len(fresh))
	for _, c := range fresh {
		if data, ok := byHash[c.hash]; ok {
			out = append(out, Change{Hash: c.hash, Data: data})
		}
	}
	return out, nil
}

// ReceiveReadOnly applies a sync message from a peer that may read the
// document but not change it. The peer's changes are dropped before the core
// sees them, and so are the hashes the document does not have from its
// heads and last-sync lists: the core then neither applies anything nor asks
// the peer for its changes, so the exchange stays as short as with a peer
// that has nothing new. The peer still learns everything the document has.
// It reports whether the peer had sent changes.
func (s *SyncState) ReceiveReadOnly(msg []byte) (dropped bool, err error) {
	parsed, err := parseSyncMessage(msg)
	if err != nil {
		return false, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	dropped = len(parsed.changes) > 0
	// The peer's heads, as far as this document knows them: its heads we
	// have, plus what it says it last synced. Unknown heads would make the
	// core ask for the peer's changes over and over; an empty list would
	// make it reset and resend everything each time.
	heads := s.doc.known(parsed.heads)
	for i := range parsed.haves {
		parsed.haves[i].lastSync = s.doc.known(parsed.haves[i].lastSync)
		if len(parsed.heads) > 0 && len(heads) == 0 {
			heads = append(heads, parsed.haves[i].lastSync...)
		}
	}
	slices.SortFunc(heads, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	parsed.heads = slices.Compact(heads)
	if _, err := s.s.ReceiveMessage(parsed.encodeWithoutChanges()); err != nil {
		return dropped, fmt.Errorf("%w: %v", ErrBadSyncMessage, err)
	}
	return dropped, nil
}

// known returns the hashes of hs that the document has.
func (d *Doc) known(hs []Hash) []Hash {
	out := hs[:0:0]
	for _, h := range hs {
		if d.Has(h) {
			out = append(out, h)
		}
	}
	return out
}

// admit checks that the changes a peer sent, taken in order, each extend
// their actor's history by one (or are already known), and returns the new
// ones. The core itself accepts a change whose seq skips ahead and then
// panics when it generates a message; this refuses such changes first.
func (d *Doc) admit(changes []changeHeader) ([]changeHeader, error) {
	if len(changes) == 0 {
		return nil, nil
	}
	if d.seqs == nil {
		if err := d.indexSeqs(); err != nil {
			return nil, err
		}
	}
	var fresh []changeHeader
	next := map[string]uint64{} // seqs as this message advances them
	seen := make(map[Hash]bool, len(changes))
	for _, c := range changes {
		if _, ok := d.queued[c.hash]; ok || seen[c.hash] || d.Has(c.hash) {
			continue
		}
		seen[c.hash] = true
		last, ok := next[c.actor]
		if !ok {
			last = d.seqs[c.actor]
		}
		if c.seq != last+1 {
			return nil, fmt.Errorf("change %x by actor %x has seq %d, but the actor's last known change is seq %d",
				c.hash[:4], c.actor, c.seq, last)
		}
		next[c.actor] = c.seq
		fresh = append(fresh, c)
	}
	return fresh, nil
}

// settle records admitted changes after the core took them.
func (d *Doc) settle(fresh []changeHeader) {
	for _, c := range fresh {
		d.seqs[c.actor] = max(d.seqs[c.actor], c.seq)
		d.queued[c.hash] = c.seq
	}
	for h := range d.queued {
		if d.Has(h) {
			delete(d.queued, h)
		}
	}
}

// indexSeqs builds the per-actor seq index from the document's history.
func (d *Doc) indexSeqs() error {
	chs, err := d.d.Changes()
	if err != nil {
		return fmt.Errorf("index document history: %w", err)
	}
	d.seqs = make(map[string]uint64)
	d.queued = make(map[Hash]uint64)
	for _, c := range chs {
		a := string(mustHex(c.ActorID()))
		d.seqs[a] = max(d.seqs[a], c.ActorSeq())
	}
	return nil
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

// mustHex decodes an actor ID as automerge-go renders it (hex).
func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(fmt.Sprintf("automerge-go returned a non-hex actor ID %q", s))
	}
	return b
}
