package room

import "github.com/tandem-sync/tandem/sync/wire"

// Peer is one connection's side of a room: where the room sends that peer's
// messages. The hub implements it; tests use an in-memory one.
//
// A room keys its sync states by Peer value, not by peer ID, so that a
// reconnect (a new connection with the same peer ID) starts from a fresh
// sync state, as the protocol requires.
type Peer interface {
	// ID is the peer's ID as it sent it in join.
	ID() wire.PeerID
	// StorageID is the storage ID the peer announced in join, under which
	// the room keeps its sync state between connections; empty for a peer
	// without storage (or one that said it is ephemeral).
	StorageID() string
	// Send queues msg for the peer without blocking. A peer whose queue is
	// full is disconnected by its implementation.
	Send(msg wire.Message)
	// Fail sends the peer an error message saying why, then closes its
	// connection with code. Used for input that breaks the protocol.
	Fail(code wire.CloseCode, reason string)
}
