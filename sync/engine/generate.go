package engine

import (
	"slices"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Generate returns the next sync message for the peer, or false when there
// is nothing to send: the core's generate_sync_message
// (SYNC-ALGORITHM.md §4) as the 0.5 core, which Tandem's peers know from
// the server, decides it, with fixes where that core can stall:
//
//   - need is what the peer's heads lead to that the document lacks (the
//     0.11 core's missing_deps_from), not the missing deps of every held
//     change: those asked every peer for one peer's changes, and withheld
//     the have (so the others' new changes) until that peer answered;
//   - the in-flight flag (we sent, and wait for an answer) does not hold
//     back a message after the peer has shown it got our last one (its
//     last sync is the heads we last sent: 0.5.0 waited there for an
//     answer that never came when a change of the peer's hid in our
//     filter, automerge #703), nor one that carries changes the peer asked
//     for. Otherwise the flag is cleared as 0.5.0 does, which saves the
//     extra messages 0.5.2's "always clear" sends.
//
// Messages are V1 with one change chunk per entry and no trailer, which
// every core version reads, and which keeps peers sending V1; except that
// a peer that reads V2 (it sent a trailer) and lacks more than a third of
// the changes (the 0.7.3+ core's rule; a fresh peer lacks all of them) is
// sent the whole document in one V2 message when the document has a
// snapshot that makes it smaller (see wholeDocMessage). There is no
// have_responded (0.5.3): like the 0.5 core, a server whose peer is
// already in sync says nothing.
//
// The cost is proportional to what it touches: the changes since the
// shared heads (for the filter) and since the peer's last sync (to find
// what to send), not the document's history; for a new session (no shared
// heads), the whole history goes into the filter, as in the core.
func (s *SyncState) Generate(d *Document) ([]byte, bool) {
	g := d.g
	ourHeads := g.Heads()
	var need []Hash
	if !s.readOnly && s.theirHeads != nil {
		need = d.missingDepsFrom(*s.theirHeads)
	}
	withHave := true
	for _, h := range need {
		if s.theirHeads == nil || !slices.Contains(*s.theirHeads, h) {
			withHave = false // waiting for what we need: our summary can wait
		}
	}
	if s.theirHave != nil && len(*s.theirHave) > 0 {
		for _, h := range (*s.theirHave)[0].LastSync {
			if !g.Has(h) {
				// Their last sync is unknown to us: ask them to start over.
				// The state does not change, so this repeats until they do.
				return resetMessage(ourHeads), true
			}
		}
	}
	var send []uint32
	if s.theirHave != nil && s.theirNeed != nil && !s.peerReadOnly {
		send = s.changesToSend(g, *s.theirHave, *s.theirNeed)
	}
	if slices.Equal(s.lastSentHeads, ourHeads) {
		caughtUp := s.readOnly || (s.theirHeads != nil && slices.Equal(*s.theirHeads, ourHeads))
		if caughtUp && len(send) == 0 {
			return nil, false
		}
		if s.inFlight && !s.answersNeed(g, send) {
			return nil, false
		}
	}

	if len(send) > 0 && s.trailer && len(send) > g.Len()/3 {
		if entry, ok := d.wholeDoc(send); ok {
			return s.wholeDocMessage(g, ourHeads, need, withHave, entry), true
		}
	}

	var bloom BloomFilter
	if withHave {
		since := g.since(s.sharedHeads)
		hs := make([]Hash, len(since))
		for i, n := range since {
			hs[i] = g.node(n).hash
		}
		bloom = NewBloomFilter(hs)
	}
	size := 1 + 10 + 32*len(ourHeads) + 10 + 32*len(need) + 1 + 10 + 32*len(s.sharedHeads) + 10 + bloom.EncodedLen() + 10
	for _, n := range send {
		size += 10 + len(g.node(n).raw)
	}
	b := make([]byte, 0, size)
	b = append(b, MessageV1)
	b = appendHashes(b, ourHeads)
	b = appendHashes(b, need)
	if withHave {
		b = leb128.AppendUint(b, 1)
		b = appendHashes(b, s.sharedHeads)
		b = leb128.AppendUint(b, uint64(bloom.EncodedLen()))
		b = bloom.AppendEncoded(b)
	} else {
		b = leb128.AppendUint(b, 0)
	}
	b = leb128.AppendUint(b, uint64(len(send)))
	if len(send) > 0 && s.sent == nil {
		s.sent = make(map[uint32]struct{}, len(send))
	}
	for _, n := range send {
		raw := g.node(n).raw
		b = leb128.AppendUint(b, uint64(len(raw)))
		b = append(b, raw...)
		s.sent[n] = struct{}{}
	}
	s.lastSentHeads = ourHeads
	s.inFlight = true
	return b, true
}

// wholeDocMessage is the message of a whole-document sync: V2, our heads,
// need, and the document in one entry (see wholeDoc); every change counts
// as sent, as the core marks every hash after send_doc. Its have (when
// there is one) is our heads with an empty filter rather than the core's
// filter over every change since the shared heads: once the peer has
// loaded the entry it has everything up to our heads, so what it sends
// back is exactly its changes since them, and the message stays the size
// of the document (the filter of a new session holds every change, ~1.25
// bytes each). No trailer: the peer keeps sending V1, which is all this
// engine reads from writers.
func (s *SyncState) wholeDocMessage(g *Graph, ourHeads, need []Hash, withHave bool, entry []byte) []byte {
	b := make([]byte, 0, 1+10+32*len(ourHeads)+10+32*len(need)+1+10+32*len(ourHeads)+1+1+10+len(entry))
	b = append(b, MessageV2)
	b = appendHashes(b, ourHeads)
	b = appendHashes(b, need)
	if withHave {
		b = leb128.AppendUint(b, 1)
		b = appendHashes(b, ourHeads)
		b = leb128.AppendUint(b, 0)
	} else {
		b = leb128.AppendUint(b, 0)
	}
	b = leb128.AppendUint(b, 1)
	b = leb128.AppendUint(b, uint64(len(entry)))
	b = append(b, entry...)
	s.sent, s.sentAll = nil, uint32(g.Len())
	s.lastSentHeads = ourHeads
	s.inFlight = true
	return b
}

// resetMessage is the core's Message::reset: our heads and one empty have
// entry, which makes the peer send everything it has (minus what it sent
// this session).
func resetMessage(heads []Hash) []byte {
	b := append(make([]byte, 0, 16+32*len(heads)), MessageV1)
	b = appendHashes(b, heads)
	return append(b, 0, 1, 0, 0, 0)
}

// changesToSend is the core's get_changes_to_send, less what was sent this
// session: with no have entry, the needed changes we have; otherwise the
// changes since their last sync that no filter contains, with everything
// that depends on those (within the same set), after the needed changes
// not among them. Node indexes, in the order to send them.
//
// One departure: a read-only peer's filter is not consulted; it is sent
// every change since its last sync that it was not sent this session. Its
// changes never enter the document, so a change of ours in its filter is
// one it got elsewhere (rare in a star around the server) or a false
// positive (about 1 % each). The core trusts a false positive and
// advertises a head the peer lacks, and a 0.5.0 core peer (automerge-go)
// then never asks for it: it clears its in-flight flag only when its sent
// changes are acknowledged, which a read-only room never does, or when it
// knows every head we sent. It would miss that change, and all after it,
// until it reconnects.
func (s *SyncState) changesToSend(g *Graph, have []Have, need []Hash) []uint32 {
	var out []uint32
	if len(have) == 0 {
		for _, h := range need {
			if i, ok := g.lookup(&h); ok && !s.wasSent(i) {
				out = append(out, i)
			}
		}
		return out
	}
	var last []Hash
	for i := range have {
		last = append(last, have[i].LastSync...)
	}
	changes := g.since(sortHashes(last))
	// Mark what to send: not in any filter, or depending on something to
	// send (one pass suffices: deps come first in topological order, and
	// the dependents the core adds are those inside the same set).
	g.newWalk()
	for _, n := range changes {
		send := true
		h := &g.node(n).hash
		for j := range have {
			if !s.readOnly && have[j].Bloom.Contains(*h) { // see above for readOnly
				send = false
				break
			}
		}
		if !send {
			for _, dep := range g.deps(n) {
				if g.markOf(dep) == markNew {
					send = true
					break
				}
			}
		}
		if send {
			g.setMark(n, markNew)
		}
	}
	for _, h := range need {
		if i, ok := g.lookup(&h); ok && g.markOf(i) != markNew && !s.wasSent(i) {
			out = append(out, i)
		}
	}
	for _, n := range changes {
		if g.markOf(n) == markNew && !s.wasSent(n) {
			out = append(out, n)
		}
	}
	return out
}

// answersNeed reports whether send holds a change the peer asked for: a
// message carrying it is no duplicate of the one in flight, so the
// in-flight flag does not hold it back (the 0.5.0 core would, and the
// peer might wait for it forever).
func (s *SyncState) answersNeed(g *Graph, send []uint32) bool {
	if s.theirNeed == nil {
		return false
	}
	for _, h := range *s.theirNeed {
		if i, ok := g.lookup(&h); ok && slices.Contains(send, i) {
			return true
		}
	}
	return false
}

func (s *SyncState) wasSent(n uint32) bool {
	if n < s.sentAll {
		return true
	}
	_, ok := s.sent[n]
	return ok
}
