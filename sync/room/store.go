package room

import (
	"context"
	"errors"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// ErrNotFound is returned by Store.Load for a document that has neither a
// snapshot nor any logged change.
var ErrNotFound = errors.New("document not found")

// StoredDoc is what the store holds for one document: the latest compacted
// snapshot (nil if there is none yet) and the changes logged after it.
type StoredDoc struct {
	// Snapshot is doc.Save() output, or nil.
	Snapshot []byte
	// SnapshotHeads are the heads recorded with Snapshot: what it covers,
	// known without loading it.
	SnapshotHeads []core.Hash
	// Changes are the log entries after the snapshot, in append order.
	Changes [][]byte
	// LastSeq is the log sequence number of the last entry in Changes, or
	// the sequence the snapshot covers when Changes is empty. Sequence
	// numbers increase with every append to a document's log.
	LastSeq int64
}

// Store is where rooms keep documents durably. Implementations live in
// docstore/ and must pass the conformance suite in docstore/storetest.
//
// All methods are safe for concurrent use. Appends for one document are made
// by one room at a time, in order.
type Store interface {
	// StorageID returns this store's stable storage ID (a UUIDv4 text),
	// creating and persisting it on first use.
	StorageID(ctx context.Context) (string, error)
	// Load returns the document's snapshot and the changes logged after it,
	// or ErrNotFound.
	Load(ctx context.Context, id wire.DocID) (StoredDoc, error)
	// Append durably adds changes to the document's log (creating the
	// document if needed) and returns the sequence number of the last log
	// entry. A change whose hash is already logged for the document is not
	// stored twice. When Append returns nil, the changes survive a crash.
	Append(ctx context.Context, id wire.DocID, changes []core.Change) (lastSeq int64, err error)
	// Compact atomically replaces the document's snapshot with snapshot
	// (whose heads are heads) and deletes the log entries with sequence
	// numbers up to and including throughSeq.
	Compact(ctx context.Context, id wire.DocID, snapshot []byte, heads []core.Hash, throughSeq int64) error
	// Delete removes the document, its snapshot and its log. Deleting a
	// missing document is not an error.
	Delete(ctx context.Context, id wire.DocID) error
	// Close releases the store's resources.
	Close() error
}

// DocStat describes what a store holds for one document, without loading it.
type DocStat struct {
	// ID is the document's ID.
	ID wire.DocID
	// Size is the bytes stored for the document: its snapshot plus its log.
	Size int64
	// SnapshotSize is the length of the snapshot (0 if there is none).
	SnapshotSize int64
	// Changes is the number of changes in the document's history: every
	// change ever appended, compacted into the snapshot or still logged.
	// (It is the log sequence number of the last append, since a store
	// numbers each stored change and never stores a change twice.)
	Changes int64
	// CreatedAt is when the document was first stored.
	CreatedAt time.Time
	// UpdatedAt is when the document was last appended to or compacted.
	UpdatedAt time.Time
}

// SyncStates is where a store keeps peers' sync states between
// connections, keyed by document and by the peer's storage ID (the one a
// client with storage announces in join). Both stores in docstore implement
// it; a room uses it when its store does.
type SyncStates interface {
	// LoadSyncState returns the state saved for storageID on the document,
	// or nil if there is none.
	LoadSyncState(ctx context.Context, id wire.DocID, storageID string) ([]byte, error)
	// SaveSyncState saves state for storageID on the document, replacing
	// any before it. Delete removes a document's sync states with it.
	SaveSyncState(ctx context.Context, id wire.DocID, storageID string, state []byte) error
}
