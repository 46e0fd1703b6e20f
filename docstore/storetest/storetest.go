// Package storetest is the conformance suite for room.Store
// implementations. Every store in docstore runs it from its tests:
//
//	storetest.Run(t, storetest.Harness{Open: ..., Reopen: ...})
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Harness tells Run how to make stores.
type Harness struct {
	// Open returns a new store holding no documents. Run closes it (or
	// the store Reopen returns in its place) when the subtest ends, so Open
	// should not register its own Close.
	Open func(t *testing.T) room.Store
	// Reopen closes s and opens the same data again, as a restarted server
	// would. nil skips the tests that need it.
	Reopen func(t *testing.T, s room.Store) room.Store
}

// Run runs the conformance suite against the stores h makes, one subtest
// per property.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s room.Store)
	}{
		{"StorageID", testStorageID},
		{"LoadUnknown", testLoadUnknown},
		{"AppendLoad", testAppendLoad},
		{"Duplicates", testDuplicates},
		{"AppendEmpty", testAppendEmpty},
		{"Compact", testCompact},
		{"CompactErrors", testCompactErrors},
		{"Delete", testDelete},
		{"Isolation", testIsolation},
		{"ConcurrentAppends", testConcurrentAppends},
		{"LargeValues", testLargeValues},
		{"NoAliasing", testNoAliasing},
		{"CanceledContext", testCanceledContext},
		{"Stat", testStat},
		{"SyncStates", testSyncStates},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := h.Open(t)
			t.Cleanup(func() { closeStore(t, s) })
			tc.fn(t, s)
		})
	}
	t.Run("Reopen", func(t *testing.T) {
		if h.Reopen == nil {
			t.Skip("Harness.Reopen is nil")
		}
		testReopen(t, h)
	})
}

func closeStore(t *testing.T, s room.Store) {
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// NewChanges returns n changes of size random bytes each, hashed with
// SHA-256 (stores do not interpret either).
func NewChanges(n, size int) []core.Change {
	out := make([]core.Change, n)
	for i := range out {
		out[i].Data = RandomBytes(size)
		out[i].Hash = sha256.Sum256(out[i].Data)
	}
	return out
}

// NewHeads returns n random hashes.
func NewHeads(n int) []core.Hash {
	out := make([]core.Hash, n)
	for i := range out {
		copy(out[i][:], RandomBytes(len(out[i])))
	}
	return out
}

func storageID(t *testing.T, s room.Store) string {
	t.Helper()
	id, err := s.StorageID(context.Background())
	if err != nil || id == "" {
		t.Fatalf("StorageID = %q, %v", id, err)
	}
	return id
}

func appendOK(t *testing.T, s room.Store, id wire.DocID, changes []core.Change) int64 {
	t.Helper()
	seq, err := s.Append(context.Background(), id, changes)
	if err != nil {
		t.Fatalf("Append(%d changes): %v", len(changes), err)
	}
	return seq
}

func compactOK(t *testing.T, s room.Store, id wire.DocID, snap []byte, heads []core.Hash, through int64) {
	t.Helper()
	if err := s.Compact(context.Background(), id, snap, heads, through); err != nil {
		t.Fatalf("Compact(through %d): %v", through, err)
	}
}

func load(t *testing.T, s room.Store, id wire.DocID) room.StoredDoc {
	t.Helper()
	doc, err := s.Load(context.Background(), id)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return doc
}

func wantChanges(t *testing.T, doc room.StoredDoc, want ...core.Change) {
	t.Helper()
	if len(doc.Changes) != len(want) {
		t.Fatalf("Load returned %d changes, want %d", len(doc.Changes), len(want))
	}
	for i := range want {
		if !bytes.Equal(doc.Changes[i], want[i].Data) {
			t.Fatalf("change %d differs: %s", i, describe(doc.Changes[i], want[i].Data))
		}
	}
}

func wantSnapshot(t *testing.T, doc room.StoredDoc, snap []byte, heads []core.Hash) {
	t.Helper()
	if !bytes.Equal(doc.Snapshot, snap) {
		t.Fatalf("snapshot differs: %s", describe(doc.Snapshot, snap))
	}
	if len(doc.SnapshotHeads) != len(heads) {
		t.Fatalf("snapshot has %d heads, want %d", len(doc.SnapshotHeads), len(heads))
	}
	for i := range heads {
		if doc.SnapshotHeads[i] != heads[i] {
			t.Fatalf("snapshot head %d = %x, want %x", i, doc.SnapshotHeads[i], heads[i])
		}
	}
}

func describe(got, want []byte) string {
	g, w := sha256.Sum256(got), sha256.Sum256(want)
	return fmt.Sprintf("got %d bytes (sha256 %x…), want %d bytes (sha256 %x…)", len(got), g[:6], len(want), w[:6])
}

// hashOf returns the hash NewChanges gives a change with data b.
func hashOf(b []byte) core.Hash { return sha256.Sum256(b) }
