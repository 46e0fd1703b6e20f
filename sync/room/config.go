package room

import (
	"log/slog"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
)

// Config tunes rooms. The zero value of each field selects its default.
type Config struct {
	// IdleTimeout is how long a room with no peers stays in memory before it
	// is flushed, compacted and evicted. Zero means one minute.
	IdleTimeout time.Duration
	// InboxSize bounds each room's inbox of unprocessed messages; a full
	// inbox makes the sending connections wait (they stop reading). Zero
	// means 256.
	InboxSize int
	// MaxBatch bounds how many inbox messages one turn takes. Zero means 256.
	MaxBatch int
	// CompactChanges is the log length (changes since the last snapshot)
	// past which a room compacts its document, once the log is also an
	// eighth of the document's history. Zero means 1000.
	CompactChanges int64
	// CompactBytes is the log size in bytes past which a room compacts,
	// when the log is also larger than the snapshot and an eighth of the
	// history. Zero means 4 MiB.
	CompactBytes int64
	// CompactMemory bounds what one compaction may hold, estimated by
	// CompactionBytes from the document's ops and changes: a document
	// larger than that is not compacted (its changes stay logged, and are
	// served from the change graph as ever). Compactions run one at a
	// time, so this is also their budget for the whole registry. Zero
	// means 256 MiB (about 2 million ops: the largest document the core
	// compacted within 1 GiB).
	CompactMemory int64
	// CoreMemory bounds the Automerge core documents the registry's rooms
	// hold, estimated at CoreBytesPerOp per op: a room materializes its
	// document only for the HTTP API, and when the cores held add up to
	// more, the longest unused are released (their documents stay in
	// memory as their changes). Zero means 1 GiB.
	CoreMemory int64
	// RetryBackoff is the first delay before retrying a failed store write;
	// it doubles up to 5 s. Zero means 50 ms.
	RetryBackoff time.Duration
	// MaxPendingBytes bounds the changes a room holds in memory while the
	// store cannot take them; past it the room stops reading its inbox, so
	// its peers' connections stop being read. Zero means 64 MiB.
	MaxPendingBytes int64
	// StoreTimeout bounds each store call. Zero means 10 s.
	StoreTimeout time.Duration
	// DrainTimeout bounds a room's final flush when the registry closes.
	// Zero means 10 s.
	DrainTimeout time.Duration
	// UnavailableGrace is how long a request for a document that exists
	// nowhere waits for another peer to bring the document before it is
	// answered doc-unavailable: a stock client delays the first sync of a
	// document it just created, so another client's request for it can
	// arrive first. If the document arrives within the grace, the
	// requester is sent it instead. Zero means DefaultUnavailableGrace;
	// negative answers at once.
	UnavailableGrace time.Duration
	// Limits bound what one sync message, change or REST edit may make the
	// document validate and hold (core.Limits; zero fields mean the
	// defaults). A message beyond them is refused, and its peer closed
	// with 1007.
	Limits core.Limits
	// Replicator, when set, connects the rooms to those of other nodes
	// sharing the store (sync/cluster); the store must implement LogStore.
	// Nil: this node is the store's only user.
	Replicator Replicator
	// CatchUpDelay is how long a room waits for log entries that other
	// nodes have not published to it yet, while it holds later ones, before
	// it reads them from the store. Zero means 200 ms.
	CatchUpDelay time.Duration
	// Logger receives room events. Nil discards them.
	Logger *slog.Logger
	// Metrics receives counts and latencies. Nil records nothing.
	Metrics Metrics
}

// CompactionBytes estimates the memory a compaction of a document with the
// given ops and changes takes at its peak (the Go heap of core.Compact,
// measured on text histories: about 120 bytes per op and 1,000 per
// change); CompactMemory is checked against it.
func CompactionBytes(ops, changes uint64) uint64 { return ops*120 + changes*1000 }

// DefaultUnavailableGrace is the UnavailableGrace of a zero Config: more
// than the stock client's 100 ms delay before it syncs a new document, plus
// the round trips of its upload.
const DefaultUnavailableGrace = 250 * time.Millisecond

func (c Config) withDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Minute
	}
	if c.InboxSize <= 0 {
		c.InboxSize = 256
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.CompactChanges <= 0 {
		c.CompactChanges = 1000
	}
	if c.CompactBytes <= 0 {
		c.CompactBytes = 4 << 20
	}
	if c.CoreMemory <= 0 {
		c.CoreMemory = 1 << 30
	}
	if c.CompactMemory <= 0 {
		c.CompactMemory = 256 << 20
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 50 * time.Millisecond
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 64 << 20
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 10 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.UnavailableGrace == 0 {
		c.UnavailableGrace = DefaultUnavailableGrace
	}
	if c.CatchUpDelay <= 0 {
		c.CatchUpDelay = 200 * time.Millisecond
	}
	if c.Metrics == nil {
		c.Metrics = noMetrics{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}
