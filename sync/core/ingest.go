package core

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/automerge/automerge-go"
)

// Every change reaches the core through plan and apply below: decoded and
// validated (validate.go) against the document's index, in the order the
// core will apply it, and only once its dependencies are in the document.
// A change whose dependencies have not arrived (its predecessors are still
// in flight, or a Bloom filter false positive made its peer skip one) is
// held here, not in the core's queue: the core would apply it as soon as
// they arrive, without the checks. Held changes are bounded
// (Limits.MaxPendingChanges and MaxPendingBytes), asked for in the sync
// messages to the peer that sent them (Generate), applied when their
// dependencies arrive, and dropped if they then fail validation.

// pendingChange is a change held until its dependencies arrive.
type pendingChange struct {
	c    *changeChunk
	from any    // the peer that sent it (a *SyncState, or a caller's token of ReceiveChanges), nil for stored or imported changes
	n    uint64 // arrival order
}

// pendingSet holds a document's pending changes.
type pendingSet struct {
	m     map[Hash]*pendingChange
	bytes int
	next  uint64
}

func (p *pendingSet) has(h Hash) bool { _, ok := p.m[h]; return ok }

func (p *pendingSet) add(c *changeChunk, from any) {
	if p.m == nil {
		p.m = map[Hash]*pendingChange{}
	}
	p.next++
	p.m[c.hash] = &pendingChange{c: c, from: from, n: p.next}
	p.bytes += len(c.raw)
}

func (p *pendingSet) remove(h Hash) {
	if pc, ok := p.m[h]; ok {
		p.bytes -= len(pc.c.raw)
		delete(p.m, h)
	}
}

// sorted returns the pending changes in arrival order.
func (p *pendingSet) sorted() []*pendingChange {
	out := make([]*pendingChange, 0, len(p.m))
	for _, pc := range p.m {
		out = append(out, pc)
	}
	slices.SortFunc(out, func(a, b *pendingChange) int { return int(a.n - b.n) })
	return out
}

// plan is what to do with a batch of changes.
type plan struct {
	tx      *txn
	direct  []*changeChunk // ready in the batch's order (for a sync message: applied by the core with it)
	later   []*changeChunk // ready only after others of the batch or held ones: applied after, in this order
	hold    []*changeChunk // from the batch, waiting for their dependencies
	dropped []Hash         // held changes that became ready but failed validation
	from    any
}

// stripped reports whether some change of the batch must not reach the
// core with it: it is not in direct and not in the document already.
func (p *plan) stripped(batch []*changeChunk, inDoc func(Hash) bool) bool {
	direct := make(map[Hash]bool, len(p.direct))
	for _, c := range p.direct {
		direct[c.hash] = true
	}
	for _, c := range batch {
		if !direct[c.hash] && !inDoc(c.hash) {
			return true
		}
	}
	return false
}

// plan validates a batch of changes (in order) against the document, at
// the given level. A change of the batch that fails refuses the whole
// batch. Changes whose dependencies are missing are held if hold is set,
// and refused (*MissingDepsError) otherwise.
func (d *Doc) plan(batch []*changeChunk, from any, level int, hold bool) (*plan, error) {
	idx, err := d.index()
	if err != nil {
		return nil, err
	}
	p := &plan{tx: idx.begin(), from: from}
	v := &validator{lim: &d.limits, level: level}
	ready := map[Hash]bool{}
	inDocCache := map[Hash]bool{}
	inDoc := func(h Hash) bool {
		if r, ok := inDocCache[h]; ok {
			return r
		}
		r := d.Has(h)
		inDocCache[h] = r
		return r
	}
	depsReady := func(c *changeChunk) bool {
		for _, h := range c.deps {
			if !ready[h] && !inDoc(h) {
				return false
			}
		}
		return true
	}
	index := map[Hash]int{}
	var waiting []*changeChunk
	for i, c := range batch {
		if _, dup := index[c.hash]; dup || d.pending.has(c.hash) || inDoc(c.hash) {
			continue
		}
		index[c.hash] = i
		if depsReady(c) {
			if err := v.change(p.tx, c); err != nil {
				return nil, invalid(i, c.hash, err)
			}
			ready[c.hash] = true
			p.direct = append(p.direct, c)
			continue
		}
		// Held: what can be checked without its predecessors is checked now.
		lv := &validator{lim: &d.limits, level: level, lenient: true}
		if err := lv.check(p.tx.begin(), c); err != nil {
			return nil, invalid(i, c.hash, err)
		}
		waiting = append(waiting, c)
	}
	// Apply what became ready, until nothing more does: held changes of
	// earlier batches first (in arrival order), then this batch's.
	type cand struct {
		c     *changeChunk
		batch bool
	}
	var pool []cand
	for _, pc := range d.pending.sorted() {
		if inDoc(pc.c.hash) { // it arrived by another way
			p.dropped = append(p.dropped, pc.c.hash)
			continue
		}
		pool = append(pool, cand{c: pc.c})
	}
	for _, c := range waiting {
		pool = append(pool, cand{c: c, batch: true})
	}
	for progress := true; progress; {
		progress = false
		rest := pool[:0]
		for _, k := range pool {
			if !depsReady(k.c) {
				rest = append(rest, k)
				continue
			}
			progress = true
			if err := v.change(p.tx, k.c); err != nil {
				if k.batch {
					return nil, invalid(index[k.c.hash], k.c.hash, err)
				}
				p.dropped = append(p.dropped, k.c.hash)
				continue
			}
			ready[k.c.hash] = true
			p.later = append(p.later, k.c)
		}
		pool = rest
	}
	for _, k := range pool {
		if !k.batch {
			continue
		}
		if !hold {
			var missing []Hash
			for _, h := range k.c.deps {
				if !ready[h] && !inDoc(h) {
					missing = append(missing, h)
				}
			}
			return nil, &MissingDepsError{Change: k.c.hash, Missing: missing}
		}
		p.hold = append(p.hold, k.c)
	}
	if w := p.tx.keyWork(); w > uint64(d.limits.MaxKeyWork) {
		return nil, fmt.Errorf("%w: the changes write one key so often that applying them would take the core about %d steps (more than %d)",
			ErrLimitExceeded, w, d.limits.MaxKeyWork)
	}
	if n, size := len(p.hold), holdBytes(p.hold); n > d.limits.MaxPendingChanges || size > d.limits.MaxPendingBytes {
		return nil, fmt.Errorf("%w: %d changes (%d bytes) wait for their dependencies, more than a document holds (%d, %d bytes)",
			ErrLimitExceeded, n, size, d.limits.MaxPendingChanges, d.limits.MaxPendingBytes)
	}
	return p, nil
}

func holdBytes(cs []*changeChunk) int {
	n := 0
	for _, c := range cs {
		n += len(c.raw)
	}
	return n
}

// apply records a plan after the core took its direct changes (within a
// sync message, or passed in directly), applies its later ones, and
// returns every change it applied.
//
// With direct set (ReceiveChanges), nothing reaches the core now: the
// changes are deferred until it is next needed (see Materialize).
func (d *Doc) apply(p *plan, direct bool) ([]Change, error) {
	applied := append(slices.Clip(p.direct), p.later...)
	out := make([]Change, 0, len(applied))
	for _, c := range applied {
		out = append(out, Change{Hash: c.hash, Data: bytes.Clone(c.raw)})
	}
	if direct {
		p.tx.commit()
		d.idx.heads = d.deferChanges(out, applied)
	} else {
		if err := d.loadChunks(p.later); err != nil {
			return nil, err
		}
		p.tx.commit()
		d.idx.heads = hashes(d.core().Heads())
	}
	for _, c := range p.later {
		d.pending.remove(c.hash)
	}
	for _, h := range p.dropped {
		d.pending.remove(h)
	}
	for _, c := range p.hold {
		// Keep a copy: c's columns point into the message, which may be large.
		if kept, err := decodeChangeChunk(bytes.Clone(c.raw), &d.limits); err == nil {
			d.pending.add(kept, p.from)
		}
	}
	if len(d.pending.m) > d.limits.MaxPendingChanges || d.pending.bytes > d.limits.MaxPendingBytes {
		for _, pc := range d.pending.sorted() { // the longest held go first
			if len(d.pending.m) <= d.limits.MaxPendingChanges && d.pending.bytes <= d.limits.MaxPendingBytes {
				break
			}
			d.pending.remove(pc.c.hash)
		}
	}
	return out, nil
}

// loadChunks hands validated change chunks to the core, in order.
func (d *Doc) loadChunks(cs []*changeChunk) error {
	if len(cs) == 0 {
		return nil
	}
	var buf []byte
	for _, c := range cs {
		buf = append(buf, c.raw...)
	}
	if err := d.core().LoadIncremental(buf); err != nil {
		d.idx = nil // the core may hold part of them: index again from its changes
		return fmt.Errorf("apply %d validated changes: %w", len(cs), err)
	}
	return nil
}

// index returns the document's index, bringing it up to date with changes
// that reached the core without plan (local edits and the HTTP API's
// operations): those are indexed, not validated.
func (d *Doc) index() (*docIndex, error) {
	if d.idx != nil && (len(d.lazy.raws) > 0 || d.d == nil) {
		return d.idx, nil // current: nothing reached the core since
	}
	heads := hashes(d.core().Heads())
	if d.idx != nil && slices.Equal(d.idx.heads, heads) {
		return d.idx, nil
	}
	if err := d.indexFromCore(levelIndex); err != nil {
		return nil, err
	}
	return d.idx, nil
}

// indexFromCore reads the changes the index lacks from the core, validates
// them at the given level, and records them.
func (d *Doc) indexFromCore(level int) error {
	var since []automerge.ChangeHash
	if d.idx == nil {
		d.idx = newIndex()
	} else {
		for _, h := range d.idx.heads {
			since = append(since, automerge.ChangeHash(h))
		}
	}
	chs, err := d.core().Changes(since...)
	if err != nil {
		d.idx = nil
		return fmt.Errorf("index document history: %w", err)
	}
	tx := d.idx.begin()
	v := &validator{lim: &d.limits, level: level}
	for i, ch := range chs {
		c, err := decodeChangeChunk(ch.Save(), &d.limits)
		if err == nil {
			err = v.change(tx, c)
		}
		if err != nil && level > levelIndex {
			d.idx = nil
			return invalid(i, Hash(ch.Hash()), err)
		}
	}
	tx.commit()
	d.idx.heads = hashes(d.core().Heads())
	return nil
}

// chunkSource is a framed chunk and its bytes.
type chunkSource struct {
	ch  chunk
	raw []byte
}

// splitChunks frames b as a sequence of chunks.
func splitChunks(b []byte) ([]chunkSource, error) {
	r := &reader{b: b}
	var out []chunkSource
	for len(r.b) > 0 {
		start := r.b
		ch, err := readChunk(r)
		if err != nil {
			return nil, invalid(len(out), Hash{}, err)
		}
		out = append(out, chunkSource{ch: ch, raw: start[:len(start)-len(r.b)]})
	}
	return out, nil
}

// changesOf decodes the changes chunks hold (see chunkChanges), refusing
// more than maxOps ops in their change chunks together.
func changesOf(chunks []chunkSource, lim *Limits, maxOps int) ([]*changeChunk, error) {
	var out []*changeChunk
	ops := uint64(0)
	for i, cs := range chunks {
		batch, err := chunkChanges(cs, lim)
		if err == nil && cs.ch.typ != chunkDocument && batch[0].numOps > uint64(maxOps)-ops {
			err = fmt.Errorf("%w: more than %d ops in the changes together", ErrLimitExceeded, maxOps)
		}
		if err != nil {
			return nil, invalid(i, cs.ch.hash, err)
		}
		if cs.ch.typ != chunkDocument {
			ops += batch[0].numOps
		}
		out = append(out, batch...)
	}
	return out, nil
}

// chunkChanges decodes the changes a chunk holds: a change chunk as it is,
// a document chunk as the changes the core rebuilds from it.
func chunkChanges(cs chunkSource, lim *Limits) ([]*changeChunk, error) {
	if cs.ch.typ == chunkDocument {
		return documentChanges(cs, lim)
	}
	c, err := decodeChange(cs.ch, cs.raw, lim)
	if err != nil {
		return nil, err
	}
	return []*changeChunk{c}, nil
}

// documentChanges checks a document chunk and returns the changes it
// holds, rebuilt in Go as the core rebuilds them (DocumentChanges).
func documentChanges(cs chunkSource, lim *Limits) ([]*changeChunk, error) {
	raws, _, _, err := documentChangesWith(cs.raw, lim, true, nil)
	if err != nil {
		return nil, err
	}
	out := make([]*changeChunk, 0, len(raws))
	for i, raw := range raws {
		c, err := decodeChangeChunk(raw, lim)
		if err != nil {
			return nil, fmt.Errorf("rebuilt change %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// Load builds a document from an optional snapshot (Save output) followed by
// raw change chunks, as a store returns them. Everything is decoded and
// validated first (see LoadWith); it uses the default Limits.
func Load(snapshot []byte, changes [][]byte) (*Doc, error) {
	return LoadWith(snapshot, changes, Limits{})
}

// LoadWith is Load with limits. The snapshot's document chunk is checked
// (checkDocument) and its changes are rebuilt in Go (DocumentChanges);
// they, the logged changes and any change chunks after the snapshot's
// document are validated in order to build the document's index. No core
// document is built: the changes are deferred, as ReceiveChanges defers
// them, until something needs the core (see Materialize). Stored changes are
// held to the rules that keep the core safe; the rules every editor's
// changes also satisfy are for changes from outside (Receive, Import).
// Changes whose dependencies are missing are held, as Receive holds them.
func LoadWith(snapshot []byte, changes [][]byte, lim Limits) (*Doc, error) {
	d := &Doc{limits: lim.withDefaults(), idx: newIndex()}
	var rest []chunkSource
	var snapChanges []*changeChunk // rebuilt from the snapshot's document, in Go
	if len(snapshot) > 0 {
		chunks, err := splitChunks(snapshot)
		if err != nil {
			return nil, fmt.Errorf("load snapshot: %w", err)
		}
		if first := chunks[0]; first.ch.typ == chunkDocument {
			raws, _, _, err := documentChangesWith(first.raw, &d.limits, true, nil)
			if err != nil {
				return nil, fmt.Errorf("load snapshot: %w", invalid(0, Hash{}, err))
			}
			for i, raw := range raws {
				c, err := decodeChangeChunk(raw, &d.limits)
				if err != nil {
					return nil, fmt.Errorf("load snapshot: rebuilt change %d: %w", i, err)
				}
				snapChanges = append(snapChanges, c)
			}
			chunks = chunks[1:]
		}
		rest = chunks
	}
	for i, c := range changes {
		chunks, err := splitChunks(c)
		if err != nil {
			return nil, fmt.Errorf("load logged change %d: %w", i, err)
		}
		rest = append(rest, chunks...)
	}
	batch, err := changesOf(rest, &d.limits, d.limits.MaxDocumentOps)
	if err != nil {
		return nil, fmt.Errorf("load %d logged changes: %w", len(changes), err)
	}
	batch = append(snapChanges, batch...)
	p, err := d.plan(batch, nil, levelSafety, true)
	if err != nil {
		return nil, fmt.Errorf("load %d logged changes: %w", len(changes), err)
	}
	if _, err := d.apply(p, true); err != nil {
		return nil, fmt.Errorf("load %d logged changes: %w", len(changes), err)
	}
	return d, nil
}

// Import validates body (a saved document, change chunks, or both, as
// PUT /docs/{id}/binary takes it) against the document and merges the
// changes it holds that the document lacks. Document chunks are checked and
// rebuilt into changes in a scratch document first; every change is then
// validated as a peer's would be. Nothing is applied unless everything
// passes: the error is an *InvalidChangeError, a *MissingDepsError (a
// change depends on changes neither the document nor the body holds), or
// wraps ErrLimitExceeded.
func (d *Doc) Import(body []byte) error {
	if len(body) == 0 {
		return invalid(0, Hash{}, errors.New("no chunks"))
	}
	chunks, err := splitChunks(body)
	if err != nil {
		return err
	}
	batch, err := changesOf(chunks, &d.limits, d.limits.MaxOpsPerMessage)
	if err != nil {
		return err
	}
	p, err := d.plan(batch, nil, levelFull, false)
	if err != nil {
		return err
	}
	if d.Empty() && len(chunks) == 1 && chunks[0].ch.typ == chunkDocument && len(p.later) == 0 {
		// A whole document into an empty one: the core loads it in one go
		// (the chunk passed checkDocument, and its changes passed above).
		if err := d.core().LoadIncremental(chunks[0].raw); err != nil {
			d.idx = nil
			return fmt.Errorf("import document: %w", err)
		}
		p.direct = nil
	}
	_, err = d.apply(p, true)
	return err
}

// ChunkHashes checks that b is a non-empty sequence of complete Automerge
// chunks (a saved document, change chunks, or both) and nothing else, that
// each decodes and passes validation as far as it can without the document
// it will go into, and returns the hashes of its change chunks (compressed
// ones by the hash of their uncompressed form). Document chunks are
// checked, loaded into a scratch document and their changes validated in
// full; change chunks are validated against what the body itself creates
// (objects and actors from outside it are taken on trust). Doc.Import
// validates against the document too. The core's incremental loader
// silently stops at a truncated or trailing piece and silently holds back
// changes whose dependencies are missing; the hashes let a caller notice
// both.
func ChunkHashes(b []byte) ([]Hash, error) { return chunkHashes(b, DefaultLimits()) }

func chunkHashes(b []byte, lim Limits) ([]Hash, error) {
	if len(b) == 0 {
		return nil, errors.New("no chunks")
	}
	lim = lim.withDefaults()
	chunks, err := splitChunks(b)
	if err != nil {
		return nil, err
	}
	tx := newIndex().begin()
	strict := &validator{lim: &lim, level: levelFull}
	lenient := &validator{lim: &lim, level: levelFull, lenient: true}
	seen := map[Hash]bool{}
	var hashes []Hash
	ops := uint64(0)
	for i, cs := range chunks {
		batch, err := chunkChanges(cs, &lim)
		if err != nil {
			return nil, invalid(i, cs.ch.hash, err)
		}
		v := strict // a document holds everything its changes refer to
		if cs.ch.typ != chunkDocument {
			v = lenient
			hashes = append(hashes, batch[0].hash)
			if ops += batch[0].numOps; ops > uint64(lim.MaxOpsPerMessage) {
				return nil, invalid(i, batch[0].hash, fmt.Errorf("%w: more than %d ops in the changes together", ErrLimitExceeded, lim.MaxOpsPerMessage))
			}
		}
		for _, c := range batch {
			if seen[c.hash] {
				continue
			}
			seen[c.hash] = true
			if err := v.change(tx, c); err != nil {
				return nil, invalid(i, c.hash, err)
			}
		}
	}
	return hashes, nil
}
