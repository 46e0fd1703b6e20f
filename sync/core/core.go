// Package core is Tandem's narrow seam over the Automerge core
// (github.com/automerge/automerge-go). Rooms use only what is here, so that
// the core can be replaced, or given a fast path, without touching them.
//
// The core is Rust behind cgo, built with panic=abort: a crafted change
// that makes it panic kills the whole server. So nothing from outside
// reaches it undecoded: every change in a peer's sync message (Receive), a
// store's snapshot and log (Load) and an import (Import, ChunkHashes) is
// decoded in Go (change.go, columns.go, document.go) and validated against
// the document's index (validate.go) in the order the core will apply it
// (ingest.go). Errors about bad input are *InvalidChangeError (or
// *MissingDepsError), wrapping ErrLimitExceeded when a Limits bound is the
// reason. Edits made through Automerge() are the server's own and are only
// indexed.
//
// Nothing here is safe for concurrent use: a room owns its Doc and the sync
// states made from it, and calls them from its own goroutine.
package core

import (
	"bytes"
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
	d      *automerge.Doc
	limits Limits
	// idx is what changes are validated against (validate.go): the type of
	// each object and each actor's last seq and op. nil until first needed,
	// then kept current as changes are admitted (ingest.go).
	idx *docIndex
	// pending holds changes whose dependencies have not arrived.
	pending pendingSet
	// lazy holds validated changes the core has not been given yet
	// (ReceiveChanges defers them): the core is materialized only when
	// something needs it (see Materialize).
	lazy lazyChanges
}

// lazyChanges are validated changes, in causal order, that the core has not
// applied yet, and what the document looks like with them.
type lazyChanges struct {
	raws   [][]byte
	hashes []Hash // of raws
	has    map[Hash]struct{}
	heads  []Hash // the document's heads, these changes included
}

// NewDoc returns an empty document with the default Limits.
func NewDoc() *Doc { return NewDocWith(Limits{}) }

// NewDocWith returns an empty document that validates what it receives
// within lim.
func NewDocWith(lim Limits) *Doc {
	return &Doc{limits: lim.withDefaults(), idx: newIndex()}
}

// core returns the Automerge document, creating it on first use (a room
// for a document that does not exist yet, or whose changes only passed
// through it, holds no core document) and giving it the changes
// ReceiveChanges deferred. Should the core refuse those, it is returned
// without them; Materialize reports that, and Save keeps them.
func (d *Doc) core() *automerge.Doc {
	_ = d.Materialize()
	if d.d == nil {
		d.d = automerge.New()
	}
	return d.d
}

// Materialize gives the core the changes ReceiveChanges deferred, so that
// the Automerge document is the whole document. It is done on demand by
// everything that reads the core; callers that must not work on a partial
// document (compaction, the HTTP API) call it first for its error. A
// failure (the core refusing changes that passed validation) leaves them
// deferred, to be tried again; the document's heads and Save stay whole.
func (d *Doc) Materialize() error {
	if len(d.lazy.raws) == 0 {
		return nil
	}
	if d.d == nil {
		d.d = automerge.New()
	}
	var buf []byte
	for _, raw := range d.lazy.raws {
		buf = append(buf, raw...)
	}
	err := d.d.LoadIncremental(buf)
	if err == nil && !slices.Equal(hashes(d.d.Heads()), d.lazy.heads) {
		err = errors.New("the core's heads differ from the validated changes'")
	}
	if err != nil {
		return fmt.Errorf("materialize %d changes: %w", len(d.lazy.raws), err)
	}
	d.lazy = lazyChanges{}
	return nil
}

// Materialized reports whether the document holds a core document (see
// Materialize and Release).
func (d *Doc) Materialized() bool { return d.d != nil }

// Release drops the core document, keeping the document as the validated
// changes it is made of, as Load leaves a document: until something needs
// the core again, which then rebuilds it (Materialize). history must be all
// of the document's changes in causal order (as the room's change graph
// holds them), and heads their heads. It does nothing and reports false if
// those are not the core's heads, or the core refused changes it was
// given (they stay deferred until it takes them).
func (d *Doc) Release(history []Change, heads []Hash) bool {
	if d.d == nil {
		return true
	}
	if len(d.lazy.raws) > 0 || !slices.Equal(hashes(d.d.Heads()), heads) {
		return false
	}
	if _, err := d.index(); err != nil { // takes in the core's own edits
		return false
	}
	lazy := lazyChanges{
		raws:   make([][]byte, len(history)),
		hashes: make([]Hash, len(history)),
		has:    make(map[Hash]struct{}, len(history)),
		heads:  slices.Clone(heads),
	}
	for i, c := range history {
		lazy.raws[i], lazy.hashes[i] = c.Data, c.Hash
		lazy.has[c.Hash] = struct{}{}
	}
	d.lazy, d.d = lazy, nil
	return true
}

// deferChanges records validated changes (in causal order, with their
// decoded deps) for the core to apply when it is next needed, and returns
// the document's heads with them.
func (d *Doc) deferChanges(cs []Change, chunks []*changeChunk) []Hash {
	heads := d.lazy.heads
	if len(d.lazy.raws) == 0 {
		heads = slices.Clone(d.idx.heads)
		d.lazy.has = make(map[Hash]struct{}, len(cs))
	}
	for i, c := range cs {
		d.lazy.raws = append(d.lazy.raws, c.Data)
		d.lazy.hashes = append(d.lazy.hashes, c.Hash)
		d.lazy.has[c.Hash] = struct{}{}
		heads = slices.DeleteFunc(heads, func(h Hash) bool { return slices.Contains(chunks[i].deps, h) })
		heads = append(heads, c.Hash)
	}
	slices.SortFunc(heads, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	d.lazy.heads = heads
	return slices.Clone(heads)
}

// SetLimits changes the limits the document validates with from now on.
func (d *Doc) SetLimits(lim Limits) { d.limits = lim.withDefaults() }

// Pending returns how many changes the document holds back because their
// dependencies have not arrived.
func (d *Doc) Pending() int { return len(d.pending.m) }

// Heads returns the document's current heads.
func (d *Doc) Heads() []Hash {
	if len(d.lazy.raws) > 0 {
		return slices.Clone(d.lazy.heads)
	}
	if d.d == nil {
		return nil
	}
	return hashes(d.d.Heads())
}

// Save returns the whole document in Automerge's compressed format,
// followed by the changes held back for their dependencies (as the core
// keeps its orphans), which Load holds back again. Should the core have
// refused deferred changes (see Materialize), they follow the snapshot as
// change chunks: nothing is lost by saving.
//
// A document whose core was never needed (it was loaded, and changes only
// passed through it) is encoded in Go from its changes (EncodeDocument),
// without building the core.
func (d *Doc) Save() []byte {
	var b []byte
	if d.d == nil {
		// An error is not expected of validated changes; the core saves
		// them then.
		b, _ = EncodeDocument(d.lazy.raws)
	}
	if b == nil {
		b = d.core().Save()
		for _, raw := range d.lazy.raws {
			b = append(b, raw...)
		}
	}
	for _, pc := range d.pending.sorted() {
		b = append(b, pc.c.raw...)
	}
	return b
}

// Empty reports whether the document has no changes.
func (d *Doc) Empty() bool {
	return len(d.lazy.raws) == 0 && (d.d == nil || len(d.d.Heads()) == 0)
}

// Has reports whether the change with hash h is part of the document.
func (d *Doc) Has(h Hash) bool {
	if _, ok := d.lazy.has[h]; ok {
		return true
	}
	if d.d == nil {
		return false
	}
	_, err := d.d.Change(automerge.ChangeHash(h))
	return err == nil
}

// ChangesSince returns the changes the document has that heads do not
// cover, in causal order: after a local edit, the edit's changes.
//
// The whole history of a document whose core was never needed comes from
// what it validated, without building the core.
func (d *Doc) ChangesSince(heads []Hash) ([]Change, error) {
	if d.d == nil && len(heads) == 0 {
		out := make([]Change, len(d.lazy.raws))
		for i, raw := range d.lazy.raws {
			out[i] = Change{Hash: d.lazy.hashes[i], Data: raw}
		}
		return out, nil
	}
	hs := make([]automerge.ChangeHash, len(heads))
	for i, h := range heads {
		hs[i] = automerge.ChangeHash(h)
	}
	chs, err := d.core().Changes(hs...)
	if err != nil {
		return nil, fmt.Errorf("changes since %d heads: %w", len(heads), err)
	}
	out := make([]Change, len(chs))
	for i, c := range chs {
		out[i] = Change{Hash: Hash(c.Hash()), Data: c.Save()}
	}
	return out, nil
}

// Automerge exposes the underlying automerge-go document to code that needs
// the full API (the HTTP API's JSON rendering and edits). Callers must hold
// the room's turn.
func (d *Doc) Automerge() *automerge.Doc { return d.core() }

// SyncState is the sync protocol state for one peer of one document.
type SyncState struct {
	doc *Doc
	s   *automerge.SyncState
	// What the core last heard from the peer, for Generate to ask for
	// the dependencies of the peer's held changes as the core would.
	theirHeads    []Hash
	theirLastSync []Hash // of the first have entry
	theirHave     bool
}

// NewSyncState returns a fresh sync state for a peer of d.
func (d *Doc) NewSyncState() *SyncState {
	return &SyncState{doc: d, s: automerge.NewSyncState(d.core())}
}

// ErrBadSyncMessage wraps errors from sync messages that cannot be decoded
// or applied.
var ErrBadSyncMessage = errors.New("invalid sync message")

// Receive applies one sync message from the peer to the document and returns
// the changes it applied that the document did not have: the message's
// own, and held changes whose dependencies it brought. The returned bytes
// are what a change log stores. Every change is decoded and validated
// (validate.go) before the core sees it; a change whose dependencies have
// not arrived is held back (not returned, not applied) until they do. A
// message that is malformed or carries an invalid change is refused with an
// error wrapping ErrBadSyncMessage and, for a bad change, an
// *InvalidChangeError (and ErrLimitExceeded when it goes beyond the
// document's Limits); it changes nothing.
func (s *SyncState) Receive(msg []byte) ([]Change, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadSyncMessage)
	}
	d := s.doc
	d.core() // the core's sync state works on the whole document
	parsed, err := parseSyncMessage(msg, &d.limits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	p, err := d.plan(parsed.changes, s, levelFull, true)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	in := msg
	if p.stripped(parsed.changes, d.Has) {
		in = parsed.encode(p.direct) // the core must not queue held changes
	}
	if _, err := s.s.ReceiveMessage(in); err != nil {
		d.idx = nil // it may have applied some: index again from its changes
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	s.remember(parsed)
	out, err := d.apply(p, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	return out, nil
}

// remember records what the core heard from the peer.
func (s *SyncState) remember(m syncMessage) {
	s.theirHeads = m.heads
	s.theirHave = len(m.haves) > 0
	s.theirLastSync = nil
	if s.theirHave {
		s.theirLastSync = m.haves[0].lastSync
	}
}

// ReceiveReadOnly applies a sync message from a peer that may read the
// document but not change it. The peer's changes are dropped before the core
// sees them, and so are the hashes the document does not have from its
// heads and last-sync lists: the core then neither applies anything nor asks
// the peer for its changes, so the exchange stays as short as with a peer
// that has nothing new. The peer still learns everything the document has.
// It reports whether the peer had sent changes. The changes are decoded
// (a malformed one refuses the message) but not validated against the
// document.
func (s *SyncState) ReceiveReadOnly(msg []byte) (dropped bool, err error) {
	s.doc.core() // the core's sync state works on the whole document
	parsed, err := parseSyncMessage(msg, &s.doc.limits)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	dropped = len(parsed.changes) > 0
	for i, c := range parsed.changes {
		it := c.ops(&s.doc.limits)
		for it.next() {
		}
		if it.err != nil {
			return false, fmt.Errorf("%w: %w", ErrBadSyncMessage, invalid(i, c.hash, it.err))
		}
	}
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
	s.remember(parsed)
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

// Generate returns the next sync message for the peer, or false when there is
// nothing to send.
// When the peer's changes are held for dependencies, the message asks for
// those, as the core does for the changes in its queue.
func (s *SyncState) Generate() ([]byte, bool) {
	s.doc.core() // the core's sync state works on the whole document
	sm, ok := s.s.GenerateMessage()
	if !ok {
		return nil, false
	}
	return s.askForPending(sm.Bytes()), true
}

func hashes(hs []automerge.ChangeHash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}
