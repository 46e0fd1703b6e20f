package engine

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
)

// A whole-document sync (the core's send_doc, SYNC-ALGORITHM.md §4.1 step
// 5): a peer that reads V2 messages and has nothing, or lacks more than a
// third of the changes, is sent the document in one V2 entry, a document
// chunk (Automerge's save()) followed by the change chunks it does not
// cover, instead of every change on its own. The document chunk is the
// room's last snapshot (SetSnapshot); the engine never saves one itself.

// snapshot is a document chunk and what it covers.
type snapshot struct {
	doc   []byte // one document chunk
	heads []Hash // its heads: it covers them and their ancestors
}

// ErrBadSnapshot is wrapped by SetSnapshot's error for bytes that do not
// start with a document chunk whose heads the graph has.
var ErrBadSnapshot = errors.New("unusable snapshot")

// SetSnapshot gives the document a saved copy of itself (the bytes
// Automerge's save() returns, or what a store keeps: a document chunk,
// possibly followed by change chunks, of which only the document chunk is
// kept) for whole-document syncs. Its heads must all be in the graph; the
// changes of the graph it does not cover are sent after it. nil forgets
// the snapshot: peers are then sent changes. A snapshot no smaller than
// the changes it covers would never be sent, and is not kept (Snapshot
// reports none). On error the document has no snapshot.
func (d *Document) SetSnapshot(saved []byte) error {
	d.snap = snapshot{}
	if saved == nil {
		return nil
	}
	n, heads, err := parseDocumentChunk(saved)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	for _, h := range heads {
		if !d.g.Has(h) {
			return fmt.Errorf("%w: head %x is not in the graph", ErrBadSnapshot, h[:4])
		}
	}
	covered := d.g.Bytes()
	for _, i := range d.g.since(heads) {
		covered -= len(d.g.node(i).raw)
	}
	if n >= covered {
		return nil
	}
	d.snap = snapshot{doc: slices.Clone(saved[:n]), heads: heads}
	return nil
}

// Snapshot returns the document chunk SetSnapshot kept and its heads, or
// nil if there is none. The caller must not modify the bytes.
func (d *Document) Snapshot() (doc []byte, heads []Hash) {
	return d.snap.doc, slices.Clone(d.snap.heads)
}

// parseDocumentChunk checks the document chunk at the start of b (its
// magic, type and checksum) and returns its length and its heads.
func parseDocumentChunk(b []byte) (int, []Hash, error) {
	r := &reader{b: b}
	if magic := r.take(4); r.err != nil || string(magic) != chunkMagic {
		return 0, nil, errors.New("no chunk magic")
	}
	sum := r.take(4)
	typ := r.byte()
	hashed := r.b
	data := r.take(r.uleb())
	if r.err != nil {
		return 0, nil, fmt.Errorf("chunk: %w", r.err)
	}
	if typ != chunkDocument {
		return 0, nil, fmt.Errorf("chunk type %d, not a document", typ)
	}
	h := sha256.New()
	h.Write([]byte{typ})
	h.Write(hashed[:len(hashed)-len(r.b)])
	if string(h.Sum(nil)[:4]) != string(sum) {
		return 0, nil, errors.New("bad chunk checksum")
	}
	dr := &reader{b: data}
	actors := dr.uleb()
	if dr.err == nil && actors > uint64(len(dr.b)) {
		return 0, nil, fmt.Errorf("%d actors in %d bytes", actors, len(dr.b))
	}
	for i := uint64(0); i < actors && dr.err == nil; i++ {
		dr.actor()
	}
	heads := sortHashes(dr.hashes())
	if dr.err != nil {
		return 0, nil, fmt.Errorf("document header: %w", dr.err)
	}
	return len(b) - len(r.b), heads, nil
}

// wholeDoc returns the entry of a whole-document message, the snapshot and
// the changes after it in causal order, if the document has a snapshot
// and the entry is smaller than the changes in send: the bytes a peer
// that lacks send is spared by being sent the document instead.
func (d *Document) wholeDoc(send []uint32) ([]byte, bool) {
	if d.snap.doc == nil {
		return nil, false
	}
	g := d.g
	budget := 0
	for _, n := range send {
		budget += len(g.node(n).raw)
	}
	size := len(d.snap.doc)
	if size >= budget {
		return nil, false
	}
	tail := g.since(d.snap.heads)
	for _, n := range tail {
		size += len(g.node(n).raw)
		if size >= budget {
			return nil, false
		}
	}
	entry := make([]byte, 0, size)
	entry = append(entry, d.snap.doc...)
	for _, n := range tail {
		entry = append(entry, g.node(n).raw...)
	}
	return entry, true
}
