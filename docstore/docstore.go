// Package docstore holds Tandem's document stores, the implementations of
// room.Store: an embedded SQLite store (the zero-configuration default) and
// a PostgreSQL store. Every store passes the conformance suite in
// docstore/storetest.
package docstore

import (
	"errors"
	"time"

	"github.com/tandem-sync/tandem/api/webhook"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("docstore: store is closed")

// DocStat describes what a store holds for one document, without loading it.
type DocStat struct {
	// ID is the document's ID.
	ID wire.DocID
	// Size is the bytes stored for the document: its snapshot plus its log.
	Size int64
	// SnapshotSize is the length of the snapshot (0 if there is none).
	SnapshotSize int64
	// ChangeCount is the number of changes in the log, i.e. logged after
	// the snapshot and not compacted yet.
	ChangeCount int64
	// LastSeq is the sequence number of the last change ever logged; it
	// counts every stored change, compacted or not.
	LastSeq int64
	// SnapshotSeq is the log sequence number the snapshot covers (0 if
	// there is no snapshot).
	SnapshotSeq int64
	// CreatedAt is when the document was first stored.
	CreatedAt time.Time
	// UpdatedAt is when the document was last appended to or compacted.
	UpdatedAt time.Time
}

var (
	_ room.Store     = (*SQLite)(nil)
	_ room.Store     = (*Postgres)(nil)
	_ webhook.Outbox = (*SQLite)(nil)
	_ webhook.Outbox = (*Postgres)(nil)
)
