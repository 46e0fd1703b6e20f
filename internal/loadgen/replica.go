package loadgen

import (
	"errors"
	"fmt"
	"slices"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/engine"
)

// replica is a client's copy of its document: the change graph and sync
// state of Tandem's sync engine (sync/engine) for the protocol, and an
// automerge-go document for making edits.
//
// The split keeps a client cheap. Receiving a message costs what the
// message carries (the engine walks only the changes a step touches, never
// the whole history, and runs in Go), where the Automerge core's own sync
// state costs O(history) per generated message. The changes received are
// applied to the automerge-go document only when the client next edits,
// in one call, so that its edit depends on everything it has seen, as a
// real client's would.
type replica struct {
	graph *engine.Document
	ss    *engine.SyncState
	am    *automerge.Doc
	// unmerged are change chunks in the graph that am has not applied yet,
	// in the order the graph added them (causal).
	unmerged []byte
}

func newReplica() *replica {
	return &replica{graph: engine.NewDocument(engine.Options{}), ss: engine.NewSyncState(), am: automerge.New()}
}

// receive applies a sync message from the server and returns its heads and
// the changes it added to the graph (held ones it released included).
func (r *replica) receive(data []byte) (heads []engine.Hash, added []*engine.Change, err error) {
	m, err := engine.DecodeMessage(data)
	if err != nil {
		return nil, nil, fmt.Errorf("decode sync message: %w", err)
	}
	res, err := r.ss.Apply(r.graph, m)
	if err != nil {
		return nil, nil, fmt.Errorf("apply sync message: %w", err)
	}
	for _, c := range res.Added {
		r.unmerged = append(r.unmerged, c.Raw...)
	}
	return m.Heads, res.Added, nil
}

// generate returns the next sync message for the server, if there is one.
func (r *replica) generate() ([]byte, bool) { return r.ss.Generate(r.graph) }

// merge applies the received changes to the automerge-go document.
func (r *replica) merge() error {
	if len(r.unmerged) == 0 {
		return nil
	}
	if err := r.am.LoadIncremental(r.unmerged); err != nil {
		return fmt.Errorf("apply received changes: %w", err)
	}
	r.unmerged = r.unmerged[:0]
	return nil
}

// commit commits the automerge-go document's pending ops as one change
// with message msg and adds it to the graph.
func (r *replica) commit(msg string) error {
	h, err := r.am.Commit(msg)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	ch, err := r.am.Change(h)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	c, err := engine.ParseChange(ch.Save())
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if _, err := r.graph.Add([]*engine.Change{c}); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// ourHeadsIn reports whether the graph has heads and every one of them is
// in heads.
func (r *replica) ourHeadsIn(heads []engine.Hash) bool {
	ours := r.graph.Heads()
	if len(ours) == 0 {
		return false
	}
	for _, h := range ours {
		if !slices.Contains(heads, h) {
			return false
		}
	}
	return true
}

var errNotChange = errors.New("not a change chunk")

// changeMessage reads the message of a change chunk (the header the engine
// parsed before it: deps, actor, seq, start op, time; SYNC-ALGORITHM.md
// §1.1). The engine does not keep it; the load generator's stamps live
// there.
func changeMessage(raw []byte) (string, error) {
	b := raw
	if len(b) < 9 || string(b[:4]) != "\x85\x6f\x4a\x83" || b[8] != 1 {
		return "", errNotChange
	}
	b = b[9:]
	uleb := func() uint64 {
		var v uint64
		for shift := 0; shift < 64 && len(b) > 0; shift += 7 {
			c := b[0]
			b = b[1:]
			v |= uint64(c&0x7f) << shift
			if c < 0x80 {
				return v
			}
		}
		b = nil
		return 0
	}
	skip := func(n uint64) bool {
		if n > uint64(len(b)) {
			b = nil
			return false
		}
		b = b[n:]
		return true
	}
	uleb()                          // the chunk's length
	if n := uleb(); !skip(32 * n) { // deps
		return "", errNotChange
	}
	if !skip(uleb()) { // actor
		return "", errNotChange
	}
	uleb() // seq
	uleb() // start op
	uleb() // time (a signed LEB128: its bytes read the same)
	n := uleb()
	if b == nil || n > uint64(len(b)) {
		return "", errNotChange
	}
	return string(b[:n]), nil
}
