package engine

import (
	"fmt"
	"slices"
)

// SyncState is the sync protocol state for one peer of one Document
// (SYNC-ALGORITHM.md §3; sync/state.rs in the Rust core). A room keeps one
// per connected peer; it is owned by the room's goroutine like the
// Document.
type SyncState struct {
	sharedHeads   []Hash // heads both sides have; our last_sync
	lastSentHeads []Hash // our heads in the last message we generated
	// What the peer's last message said; nil before its first message
	// (the core's None), non-nil (possibly empty) after.
	theirHeads *[]Hash
	theirNeed  *[]Hash
	theirHave  *[]Have
	sent       map[uint32]struct{} // graph nodes sent this session, not yet in their history
	// sentAll: the nodes below it were sent in a whole document and none
	// is known to be in their history yet (part of sent, kept as a bound
	// so that a whole-document sync does not fill sent with every node).
	sentAll  uint32
	inFlight bool

	// readOnly: we do not take the peer's changes (it may only read).
	readOnly bool
	// peerReadOnly: the peer's trailer said it will not take ours.
	peerReadOnly bool
	// trailer: the peer has sent a trailer (it reads V2 messages).
	trailer bool
}

// NewSyncState returns the state for a new session with a peer.
func NewSyncState() *SyncState { return &SyncState{} }

// syncStateType is the first byte of an encoded sync state.
const syncStateType = 0x43

// DecodeSyncState returns the state for a session resumed with a peer from
// what Encode saved at the end of an earlier one: the shared heads, nothing
// else (the core's State::decode, whose their_have is an empty list, so
// that the first message of the session carries no changes).
func DecodeSyncState(b []byte) (*SyncState, error) {
	r := &reader{b: b}
	if t := r.byte(); r.err == nil && t != syncStateType {
		return nil, fmt.Errorf("sync state: type 0x%02x", t)
	}
	hs := r.hashes()
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Errorf("%d bytes after the shared heads", len(r.b)))
	}
	if r.err != nil {
		return nil, fmt.Errorf("sync state: %w", r.err)
	}
	none := []Have{}
	return &SyncState{sharedHeads: sortHashes(hs), theirHave: &none}, nil
}

// ResumeSyncState returns the state for a session resumed from what
// Encode saved (DecodeSyncState), less the shared heads the document does
// not have (a document deleted and created again, say), as the core's
// LoadSyncState keeps them out; bytes that do not decode give a fresh
// state.
func (d *Document) ResumeSyncState(saved []byte) *SyncState {
	s, err := DecodeSyncState(saved)
	if err != nil {
		return NewSyncState()
	}
	s.sharedHeads = slices.DeleteFunc(s.sharedHeads, func(h Hash) bool { return !d.g.Has(h) })
	return s
}

// Encode returns what a later session can resume from: 0x43 and the
// shared heads (the core's State::encode; automerge-go's LoadSyncState
// reads it).
func (s *SyncState) Encode() []byte {
	return appendHashes([]byte{syncStateType}, s.sharedHeads)
}

// SetReadOnly makes the state one for a peer that may read the document
// but not change it (the 0.9+ core's read-only sync): its changes are
// dropped unapplied, we ask it for nothing, and we stop sending once it has
// everything we have even though its heads differ from ours. Set it
// before the session's first message.
func (s *SyncState) SetReadOnly(ro bool) { s.readOnly = ro }

// SharedHeads returns the heads both sides are known to have.
func (s *SyncState) SharedHeads() []Hash { return slices.Clone(s.sharedHeads) }

// TheirHeads returns the heads of the peer's last message, and false
// before its first.
func (s *SyncState) TheirHeads() ([]Hash, bool) {
	if s.theirHeads == nil {
		return nil, false
	}
	return slices.Clone(*s.theirHeads), true
}

// InFlight reports whether we sent a message the peer has not answered.
func (s *SyncState) InFlight() bool { return s.inFlight }

// Received reports what Receive did with a message.
type Received struct {
	// Added are the changes the message added to the document, in the
	// order they were added: its own, and held ones it released. A room
	// stores them, and then every peer may need a message.
	Added []*Change
	// Held is how many of its changes wait for their deps.
	Held int
	// Dropped is how many changes it carried that were not taken because
	// the peer is read-only.
	Dropped int
}

// Receive decodes a message from the peer and applies it (Apply). A
// message that does not decode is refused with an error wrapping
// ErrBadMessage and changes nothing.
func (s *SyncState) Receive(d *Document, msg []byte) (Received, error) {
	m, err := DecodeMessage(msg)
	if err != nil {
		return Received{}, err
	}
	return s.Apply(d, m)
}

// Apply applies a decoded message from the peer to the document and the
// state (the core's receive_sync_message, SYNC-ALGORITHM.md §5; for the
// in-flight flag see Generate). Its new
// changes are added to the document in causal order, those with missing
// deps held. An error (a change the document refuses: its seq does not
// follow its actor's (ErrSeq), Options.Check refused it, or too many would
// be held) leaves both as they were.
func (s *SyncState) Apply(d *Document, m *Message) (Received, error) {
	return s.apply(d, m, nil)
}

// ApplyAdmitted is Apply for a Document whose changes are validated, and
// held for missing deps, outside it (Options.HeldOutside): the message's
// changes the Document lacks go through admit, and what it returns is
// added to the graph. An error from admit refuses the message and leaves
// the state as it was. An error wrapping ErrAdmitted means that admit
// applied changes that the graph could not take: those before it were
// added (Received.Added), and the state was not updated.
func (s *SyncState) ApplyAdmitted(d *Document, m *Message, admit Admit) (Received, error) {
	return s.apply(d, m, admit)
}

func (s *SyncState) apply(d *Document, m *Message, admit Admit) (Received, error) {
	var res Received
	g := d.g
	before := g.Heads()
	if len(m.Changes) > 0 {
		if s.readOnly {
			res.Dropped = len(m.Changes)
		} else {
			var added []*Change
			var held int
			var err error
			if admit != nil {
				added, held, err = d.admit(m.Changes, admit)
			} else {
				added, held, err = d.apply(m.Changes)
			}
			if err != nil {
				return Received{Added: added}, err
			}
			res.Added, res.Held = added, held
			s.sharedHeads = advanceHeads(before, g.Heads(), s.sharedHeads)
		}
	}
	// Whether the peer has processed our last message: its last sync is
	// the heads that message advertised (before the ack rule below).
	heard := len(m.Have) > 0 && slices.Equal(m.Have[0].LastSync, s.lastSentHeads)
	if m.Trailer {
		s.trailer = true
		if m.Flags&FlagSyncReset != 0 {
			s.sent, s.sentAll = nil, 0
		}
		s.peerReadOnly = m.Flags&FlagReadOnly != 0
	}
	g.removeAncestors(s.sent, m.Heads)
	s.trimSentAll(g, m.Heads)
	if len(s.sent) == 0 {
		// An emptied map keeps its buckets, and ranging over it (as
		// removeAncestors does) would cost what the largest send was
		// (a whole history, after a first sync) at every message.
		s.sent = nil
	}
	if (len(s.sent) == 0 && s.sentAll == 0) || heard {
		s.inFlight = false
	}
	if len(m.Changes) == 0 && slices.Equal(m.Heads, before) {
		// The ack rule: they are at our heads, so count those as sent.
		s.lastSentHeads = slices.Clone(m.Heads)
	}
	known := 0
	for _, h := range m.Heads {
		if g.Has(h) {
			known++
		}
	}
	if known == len(m.Heads) {
		s.inFlight = false
		s.sharedHeads = slices.Clone(m.Heads)
		if len(m.Heads) == 0 { // the peer lost its data: send everything again
			s.lastSentHeads = nil
			s.sent, s.sentAll = nil, 0
		}
	} else {
		shared := slices.Clone(s.sharedHeads)
		for _, h := range m.Heads {
			if g.Has(h) {
				shared = append(shared, h)
			}
		}
		s.sharedHeads = sortHashes(shared)
	}
	heads, need, have := slices.Clone(m.Heads), slices.Clone(m.Need), slices.Clone(m.Have)
	for i := range have { // keep the filters, not the message they are in
		have[i].Bloom.bits = slices.Clone(have[i].Bloom.bits)
	}
	s.theirHeads, s.theirNeed, s.theirHave = &heads, &need, &have
	return res, nil
}

// trimSentAll is removeAncestors for the nodes sent in a whole document:
// once the peer's heads show that it has any of them, those it does not
// have yet (none, normally: it loaded the document) move to sent. Until
// then the peer's heads lead to none of them, and the bound stays.
func (s *SyncState) trimSentAll(g *Graph, heads []Hash) {
	if s.sentAll == 0 || len(heads) == 0 {
		return
	}
	var rest []uint32
	for _, n := range g.since(heads) {
		if n < s.sentAll {
			rest = append(rest, n)
		}
	}
	if len(rest) == int(s.sentAll) {
		return
	}
	if len(rest) > 0 && s.sent == nil {
		s.sent = make(map[uint32]struct{}, len(rest))
	}
	for _, n := range rest {
		s.sent[n] = struct{}{}
	}
	s.sentAll = 0
}

// advanceHeads is the core's advance_heads: heads that appeared by
// applying their changes, and shared heads that are still our heads.
func advanceHeads(oldHeads, newHeads, oldShared []Hash) []Hash {
	var out []Hash
	for _, h := range newHeads {
		if !slices.Contains(oldHeads, h) || slices.Contains(oldShared, h) {
			out = append(out, h)
		}
	}
	return sortHashes(out)
}
