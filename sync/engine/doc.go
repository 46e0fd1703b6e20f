// Package engine runs the Automerge sync protocol in Go over a document's
// change graph, so that a room can sync its peers without the Automerge
// core: the cost of a sync step depends on what the step touches (the
// changes a peer lacks, the peer's heads), not on the document's history.
//
// The pieces (SYNC-ALGORITHM.md in the project's shared notes describes
// the protocol byte by byte):
//
//   - Graph: per change its hash, deps, actor, seq, op range and bytes;
//     the heads; a topological order; "changes since these heads" by a
//     walk that stops as soon as only the given heads' ancestors are left.
//   - BloomFilter: the protocol's filter, bit for bit as the core builds
//     it.
//   - Document: a Graph plus the changes held back until their deps
//     arrive, and the check (validation) every change passes first.
//   - SyncState: one peer's session; Receive applies a peer's message,
//     Generate makes the next message for it.
//
// A room would use it like this: one Document per document, owned by the
// room's goroutine, and one SyncState per connected peer.
//
//	doc := engine.NewDocument(engine.Options{Check: validate})
//	// a peer's sync message:
//	res, err := peer.state.Receive(doc, msg) // res.Added: store them
//	// a REST edit's change, or the store's log when loading:
//	added, err := doc.Add(changes)
//	// after the turn's changes are durable, for every peer:
//	if out, ok := peer.state.Generate(doc); ok { send(out) }
//
// Compatibility: Generate writes V1 messages with one change chunk per
// entry and no trailer, as the 0.5 core (automerge-go) does, so that peers
// of every core version read them and keep sending V1 (the exception: a
// peer that sent a trailer, so reads V2, and lacks more than a third of the
// changes is sent the document's snapshot in one V2 message, see
// SetSnapshot); Receive reads V1
// and V2 messages of change chunks and the trailer of current cores. The
// decisions are the 0.5 core's (differential tests check messages byte for
// byte), except where that core can stall; see Generate.
package engine
