package storetest

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func testStorageID(t *testing.T, s room.Store) {
	// First use from several goroutines at once: all get the same ID.
	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			var err error
			if ids[i], err = s.StorageID(context.Background()); err != nil {
				t.Errorf("StorageID: %v", err)
			}
		})
	}
	wg.Wait()
	id := storageID(t, s)
	if !uuidV4.MatchString(id) {
		t.Errorf("StorageID = %q, want a lower-case UUIDv4", id)
	}
	for i, got := range ids {
		if got != id {
			t.Errorf("concurrent StorageID #%d = %q, want %q", i, got, id)
		}
	}
	for range 3 {
		if again := storageID(t, s); again != id {
			t.Fatalf("StorageID changed from %q to %q", id, again)
		}
	}
}

func testLoadUnknown(t *testing.T, s room.Store) {
	_, err := s.Load(context.Background(), wire.NewDocID())
	if !errors.Is(err, room.ErrNotFound) {
		t.Fatalf("Load(unknown) error = %v, want room.ErrNotFound", err)
	}
}

func testAppendLoad(t *testing.T, s room.Store) {
	id := wire.NewDocID()
	a := NewChanges(3, 100)
	b := NewChanges(2, 1000)
	seq1 := appendOK(t, s, id, a)
	if seq1 < 3 {
		t.Errorf("first Append of 3 changes returned seq %d, want >= 3", seq1)
	}
	seq2 := appendOK(t, s, id, b)
	if seq2 < seq1+2 {
		t.Errorf("second Append of 2 changes returned seq %d after %d", seq2, seq1)
	}
	doc := load(t, s, id)
	if doc.Snapshot != nil || len(doc.SnapshotHeads) != 0 {
		t.Errorf("Load: snapshot %d bytes, %d heads; want none", len(doc.Snapshot), len(doc.SnapshotHeads))
	}
	wantChanges(t, doc, append(a, b...)...)
	if doc.LastSeq != seq2 {
		t.Errorf("Load: LastSeq = %d, want %d (last Append's result)", doc.LastSeq, seq2)
	}
}

func testDuplicates(t *testing.T, s room.Store) {
	id := wire.NewDocID()
	c := NewChanges(3, 64)
	seq1 := appendOK(t, s, id, []core.Change{c[0], c[1], c[0], c[1]})
	seq2 := appendOK(t, s, id, []core.Change{c[1], c[0]})
	if seq2 != seq1 {
		t.Errorf("Append of logged changes moved the seq from %d to %d", seq1, seq2)
	}
	seq3 := appendOK(t, s, id, []core.Change{c[1], c[2], c[2]})
	if seq3 <= seq1 {
		t.Errorf("Append of one new change returned seq %d, not after %d", seq3, seq1)
	}
	doc := load(t, s, id)
	wantChanges(t, doc, c...)
	if doc.LastSeq != seq3 {
		t.Errorf("LastSeq = %d, want %d", doc.LastSeq, seq3)
	}
}

func testAppendEmpty(t *testing.T, s room.Store) {
	ctx := context.Background()
	id := wire.NewDocID()
	for _, empty := range [][]core.Change{nil, {}} {
		seq, err := s.Append(ctx, id, empty)
		if err != nil || seq != 0 {
			t.Errorf("Append(unknown, %#v) = %d, %v; want 0, nil", empty, seq, err)
		}
	}
	if _, err := s.Load(ctx, id); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("Load after empty Append: error %v, want room.ErrNotFound (no document created)", err)
	}
	last := appendOK(t, s, id, NewChanges(2, 10))
	if seq := appendOK(t, s, id, nil); seq != last {
		t.Errorf("Append(known, nil) = %d, want the last seq %d", seq, last)
	}
}

func testCompact(t *testing.T, s room.Store) {
	ctx := context.Background()
	id := wire.NewDocID()
	c := NewChanges(6, 200)
	var seqs []int64
	for _, ch := range c[:3] {
		seqs = append(seqs, appendOK(t, s, id, []core.Change{ch}))
	}
	// Compact through the second change: the third stays.
	snap1, heads1 := RandomBytes(5000), NewHeads(2)
	compactOK(t, s, id, snap1, heads1, seqs[1])
	doc := load(t, s, id)
	wantSnapshot(t, doc, snap1, heads1)
	wantChanges(t, doc, c[2])
	if doc.LastSeq != seqs[2] {
		t.Errorf("LastSeq after compaction = %d, want %d", doc.LastSeq, seqs[2])
	}

	// Append past the compaction point, then compact through an earlier
	// seq than the last: later changes survive.
	seqs = append(seqs, appendOK(t, s, id, c[3:4]))
	seqs = append(seqs, appendOK(t, s, id, c[4:5]))
	if seqs[3] <= seqs[2] || seqs[4] <= seqs[3] {
		t.Fatalf("seqs after compaction did not increase: %v", seqs)
	}
	snap2, heads2 := RandomBytes(6000), NewHeads(1)
	compactOK(t, s, id, snap2, heads2, seqs[3])
	doc = load(t, s, id)
	wantSnapshot(t, doc, snap2, heads2)
	wantChanges(t, doc, c[4])
	if doc.LastSeq != seqs[4] {
		t.Errorf("LastSeq = %d, want %d", doc.LastSeq, seqs[4])
	}

	// Compact everything: no changes left, LastSeq is what the snapshot
	// covers, and the next seq is still higher than any before.
	snap3, heads3 := RandomBytes(7000), NewHeads(3)
	compactOK(t, s, id, snap3, heads3, seqs[4])
	doc = load(t, s, id)
	wantSnapshot(t, doc, snap3, heads3)
	wantChanges(t, doc)
	if doc.LastSeq != seqs[4] {
		t.Errorf("LastSeq with an empty log = %d, want the snapshot's seq %d", doc.LastSeq, seqs[4])
	}
	if seq := appendOK(t, s, id, c[5:6]); seq <= seqs[4] {
		t.Errorf("Append after full compaction returned seq %d, want > %d", seq, seqs[4])
	}
	doc = load(t, s, id)
	wantSnapshot(t, doc, snap3, heads3)
	wantChanges(t, doc, c[5])

	// A snapshot without heads is allowed (an empty document).
	if err := s.Compact(ctx, id, snap3, nil, doc.LastSeq); err != nil {
		t.Fatalf("Compact with no heads: %v", err)
	}
	doc = load(t, s, id)
	wantSnapshot(t, doc, snap3, nil)
	wantChanges(t, doc)
}

func testCompactErrors(t *testing.T, s room.Store) {
	ctx := context.Background()
	if err := s.Compact(ctx, wire.NewDocID(), RandomBytes(100), NewHeads(1), 0); err == nil {
		t.Error("Compact of an unknown document succeeded, want an error")
	}
	id := wire.NewDocID()
	c := NewChanges(2, 50)
	last := appendOK(t, s, id, c)
	if err := s.Compact(ctx, id, RandomBytes(100), NewHeads(1), last+1); err == nil {
		t.Errorf("Compact through seq %d past the last seq %d succeeded, want an error", last+1, last)
	}
	doc := load(t, s, id)
	if doc.Snapshot != nil {
		t.Error("a failed Compact stored a snapshot")
	}
	wantChanges(t, doc, c...)
}

func testDelete(t *testing.T, s room.Store) {
	ctx := context.Background()
	id := wire.NewDocID()
	last := appendOK(t, s, id, NewChanges(3, 100))
	compactOK(t, s, id, RandomBytes(300), NewHeads(1), last-1)
	appendOK(t, s, id, NewChanges(1, 100))
	for i := range 2 {
		if err := s.Delete(ctx, id); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
		if _, err := s.Load(ctx, id); !errors.Is(err, room.ErrNotFound) {
			t.Fatalf("Load after Delete #%d: error %v, want room.ErrNotFound", i+1, err)
		}
	}
	if err := s.Delete(ctx, wire.NewDocID()); err != nil {
		t.Errorf("Delete of a document never stored: %v", err)
	}
	// The ID can be used again and starts empty.
	fresh := NewChanges(2, 100)
	appendOK(t, s, id, fresh)
	doc := load(t, s, id)
	if doc.Snapshot != nil || len(doc.SnapshotHeads) != 0 {
		t.Error("a document re-created after Delete has the old snapshot")
	}
	wantChanges(t, doc, fresh...)
}

func testIsolation(t *testing.T, s room.Store) {
	ctx := context.Background()
	a, b := wire.NewDocID(), wire.NewDocID()
	shared := NewChanges(2, 100)
	appendOK(t, s, a, shared)
	// The same changes in another document are stored there too: duplicate
	// detection is per document.
	lastB := appendOK(t, s, b, shared)
	onlyB := NewChanges(1, 100)
	lastB2 := appendOK(t, s, b, onlyB)
	if lastB2 <= lastB {
		t.Errorf("b's seq went from %d to %d", lastB, lastB2)
	}
	wantChanges(t, load(t, s, a), shared...)
	wantChanges(t, load(t, s, b), append(append([]core.Change(nil), shared...), onlyB...)...)

	last := appendOK(t, s, a, nil)
	compactOK(t, s, a, RandomBytes(100), NewHeads(1), last)
	docB := load(t, s, b)
	if docB.Snapshot != nil {
		t.Error("compacting a gave b a snapshot")
	}
	wantChanges(t, docB, append(append([]core.Change(nil), shared...), onlyB...)...)

	if err := s.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	wantChanges(t, load(t, s, b), append(append([]core.Change(nil), shared...), onlyB...)...)
}

func testConcurrentAppends(t *testing.T, s room.Store) {
	const docs, perDoc = 20, 10
	ids := make([]wire.DocID, docs)
	want := make([][]core.Change, docs)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = wire.NewDocID()
		want[i] = NewChanges(perDoc, 100)
		wg.Go(func() {
			// One room per document: its appends are sequential.
			var prev int64
			for j := range perDoc {
				seq, err := s.Append(context.Background(), ids[i], want[i][j:j+1])
				if err != nil {
					t.Errorf("doc %d: Append: %v", i, err)
					return
				}
				if seq <= prev {
					t.Errorf("doc %d: seq %d after %d", i, seq, prev)
				}
				prev = seq
			}
		})
	}
	wg.Wait()
	for i, id := range ids {
		wantChanges(t, load(t, s, id), want[i]...)
	}
}

func testLargeValues(t *testing.T, s room.Store) {
	id := wire.NewDocID()
	big := NewChanges(1, 6<<20)
	small := NewChanges(1, 10)
	last := appendOK(t, s, id, append(big, small...))
	wantChanges(t, load(t, s, id), big[0], small[0])
	snap := RandomBytes(6 << 20)
	compactOK(t, s, id, snap, NewHeads(1), last-1)
	doc := load(t, s, id)
	wantSnapshot(t, doc, snap, doc.SnapshotHeads)
	wantChanges(t, doc, small[0])
}

func testNoAliasing(t *testing.T, s room.Store) {
	id := wire.NewDocID()
	c := NewChanges(2, 100)
	in := []core.Change{{Hash: c[0].Hash, Data: bytes.Clone(c[0].Data)}, {Hash: c[1].Hash, Data: bytes.Clone(c[1].Data)}}
	last := appendOK(t, s, id, in)
	for i := range in {
		in[i].Data[0] ^= 0xff // mutate the caller's buffers after Append
		in[i].Hash[0] ^= 0xff
	}
	wantChanges(t, load(t, s, id), c...)

	snap, heads := RandomBytes(1000), NewHeads(2)
	snapIn, headsIn := bytes.Clone(snap), append([]core.Hash(nil), heads...)
	compactOK(t, s, id, snapIn, headsIn, last-1)
	snapIn[0] ^= 0xff
	headsIn[0][0] ^= 0xff

	doc := load(t, s, id)
	wantSnapshot(t, doc, snap, heads)
	wantChanges(t, doc, c[1])
	// Mutating what Load returned does not change the next Load either.
	doc.Snapshot[0] ^= 0xff
	doc.SnapshotHeads[0][0] ^= 0xff
	doc.Changes[0][0] ^= 0xff
	doc = load(t, s, id)
	wantSnapshot(t, doc, snap, heads)
	wantChanges(t, doc, c[1])
}

// testCanceledContext: an Append whose context is already canceled fails
// with the context's error and stores nothing.
func testCanceledContext(t *testing.T, s room.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	id := wire.NewDocID()
	if _, err := s.Append(ctx, id, NewChanges(1, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with a canceled context: %v, want context.Canceled", err)
	}
	if _, err := s.Load(context.Background(), id); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("Load after a canceled Append: %v, want room.ErrNotFound", err)
	}
}

func testReopen(t *testing.T, h Harness) {
	s := h.Open(t)
	defer func() { closeStore(t, s) }()
	sid := storageID(t, s)
	a, b := wire.NewDocID(), wire.NewDocID()
	c := NewChanges(4, 300)
	last := appendOK(t, s, a, c[:3])
	snap, heads := RandomBytes(2000), NewHeads(2)
	compactOK(t, s, a, snap, heads, last-1)
	appendOK(t, s, a, c[3:])
	lastB := appendOK(t, s, b, c[:2])

	s = h.Reopen(t, s)
	if got := storageID(t, s); got != sid {
		t.Errorf("StorageID after reopen = %q, want %q", got, sid)
	}
	doc := load(t, s, a)
	wantSnapshot(t, doc, snap, heads)
	wantChanges(t, doc, c[2], c[3])
	docB := load(t, s, b)
	wantChanges(t, docB, c[:2]...)
	if docB.LastSeq != lastB {
		t.Errorf("b's LastSeq after reopen = %d, want %d", docB.LastSeq, lastB)
	}
	// Seqs carry on from where they were; logged hashes are still known.
	if seq := appendOK(t, s, a, c[3:]); seq != doc.LastSeq {
		t.Errorf("re-appending a logged change after reopen moved the seq from %d to %d", doc.LastSeq, seq)
	}
	more := NewChanges(1, 10)
	if seq := appendOK(t, s, a, more); seq <= doc.LastSeq {
		t.Errorf("Append after reopen returned seq %d, want > %d", seq, doc.LastSeq)
	}
	wantChanges(t, load(t, s, a), c[2], c[3], more[0])
}

// statter is the part of the API's catalog that testStat checks; both
// stores implement it.
type statter interface {
	Stat(ctx context.Context, id wire.DocID) (room.DocStat, error)
}

// testStat checks a document's description through appends, duplicates
// and compactions: Changes counts its whole history, compacted or not.
func testStat(t *testing.T, s room.Store) {
	st, ok := s.(statter)
	if !ok {
		t.Skip("the store has no Stat")
	}
	ctx := context.Background()
	id := wire.NewDocID()
	if _, err := st.Stat(ctx, id); !errors.Is(err, room.ErrNotFound) {
		t.Fatalf("Stat(unknown) error = %v, want room.ErrNotFound", err)
	}
	var prev room.DocStat
	check := func(what string, want room.DocStat) {
		t.Helper()
		got, err := st.Stat(ctx, id)
		if err != nil {
			t.Fatalf("Stat %s: %v", what, err)
		}
		if got.CreatedAt.IsZero() || got.UpdatedAt.Before(got.CreatedAt) || got.UpdatedAt.Before(prev.UpdatedAt) ||
			(!prev.CreatedAt.IsZero() && !got.CreatedAt.Equal(prev.CreatedAt)) {
			t.Errorf("Stat %s: created %v, updated %v (before: %v, %v)", what, got.CreatedAt, got.UpdatedAt, prev.CreatedAt, prev.UpdatedAt)
		}
		prev = got
		got.CreatedAt, got.UpdatedAt = time.Time{}, time.Time{}
		want.ID = id
		if got != want {
			t.Errorf("Stat %s = %+v;\nwant %+v", what, got, want)
		}
	}
	changes := NewChanges(3, 100)
	last := appendOK(t, s, id, append(changes, changes[0]))
	check("after Append", room.DocStat{Size: 300, Changes: 3})
	appendOK(t, s, id, changes[1:])
	check("after a duplicate Append", room.DocStat{Size: 300, Changes: 3})
	compactOK(t, s, id, make([]byte, 50), NewHeads(1), last-1)
	check("after Compact", room.DocStat{Size: 150, SnapshotSize: 50, Changes: 3})
	last = appendOK(t, s, id, NewChanges(1, 7))
	check("after Append", room.DocStat{Size: 157, SnapshotSize: 50, Changes: 4})
	compactOK(t, s, id, make([]byte, 20), nil, last)
	check("after a full Compact", room.DocStat{Size: 20, SnapshotSize: 20, Changes: 4})
}

// testSyncStates checks the sync states a store keeps per document and
// peer storage: saved, replaced, kept apart, and deleted with the document.
func testSyncStates(t *testing.T, s room.Store) {
	ss, ok := s.(room.SyncStates)
	if !ok {
		t.Skip("the store keeps no sync states")
	}
	ctx := context.Background()
	id, other := wire.NewDocID(), wire.NewDocID()
	appendOK(t, s, id, NewChanges(1, 10))
	load := func(doc wire.DocID, storage string) []byte {
		t.Helper()
		b, err := ss.LoadSyncState(ctx, doc, storage)
		if err != nil {
			t.Fatalf("LoadSyncState: %v", err)
		}
		return b
	}
	if b := load(id, "storage-a"); b != nil {
		t.Fatalf("a state nobody saved: %x", b)
	}
	for _, st := range []struct {
		doc     wire.DocID
		storage string
		state   []byte
	}{{id, "storage-a", []byte{1}}, {id, "storage-b", []byte{2}}, {other, "storage-a", []byte{3}}, {id, "storage-a", []byte{4, 5}}} {
		if err := ss.SaveSyncState(ctx, st.doc, st.storage, st.state); err != nil {
			t.Fatalf("SaveSyncState: %v", err)
		}
	}
	if a, b, o := load(id, "storage-a"), load(id, "storage-b"), load(other, "storage-a"); !bytes.Equal(a, []byte{4, 5}) ||
		!bytes.Equal(b, []byte{2}) || !bytes.Equal(o, []byte{3}) {
		t.Errorf("states %x %x %x, want 0405 02 03 (the latest per document and storage)", a, b, o)
	}
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if a := load(id, "storage-a"); a != nil {
		t.Errorf("a deleted document's sync state is still there: %x", a)
	}
	if o := load(other, "storage-a"); !bytes.Equal(o, []byte{3}) {
		t.Errorf("another document's sync state went with the delete: %x", o)
	}
}
