package storetest

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/tandem-sync/tandem/migrations"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// Helpers the two stores' own tests share.

// OpenTwoAtOnce opens two stores on the same database concurrently (as
// two nodes starting together would); they are closed when the test ends.
func OpenTwoAtOnce[S room.Store](t *testing.T, round int, open func() (S, error)) [2]S {
	t.Helper()
	var stores [2]S
	var errs [2]error
	var wg sync.WaitGroup
	for j := range stores {
		wg.Go(func() { stores[j], errs[j] = open() })
	}
	wg.Wait()
	for j, err := range errs {
		if err != nil {
			t.Fatalf("round %d: open #%d: %v", round, j, err)
		}
		t.Cleanup(func() { stores[j].Close() })
	}
	return stores
}

// CheckSharedStores checks two stores opened on the same database: both
// write, both see each other's writes, and they agree on the storage ID even
// when both make it at the same time.
func CheckSharedStores(t *testing.T, round int, a, b room.Store) {
	t.Helper()
	stores := [2]room.Store{a, b}
	var ids [2]string
	docs := [2]wire.DocID{wire.NewDocID(), wire.NewDocID()}
	var wg sync.WaitGroup
	for j, s := range stores {
		wg.Go(func() {
			var err error
			if ids[j], err = s.StorageID(context.Background()); err != nil {
				t.Errorf("StorageID: %v", err)
			}
			if _, err := s.Append(context.Background(), docs[j], NewChanges(1, 10)); err != nil {
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	if ids[0] != ids[1] {
		t.Errorf("round %d: storage IDs differ: %q, %q", round, ids[0], ids[1])
	}
	for _, s := range stores {
		for _, id := range docs {
			if _, err := s.Load(context.Background(), id); err != nil {
				t.Errorf("round %d: Load: %v", round, err)
			}
		}
	}
}

// OutboxRows returns every outbox event of the document.
func OutboxRows(t *testing.T, s webhook.Outbox, id wire.DocID) []webhook.Event {
	t.Helper()
	evs, err := s.ListDeliveries(context.Background(), webhook.Filter{DocID: id}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// AppendOne appends one small change to the document, failing t on error.
func AppendOne(t *testing.T, s room.Store, id wire.DocID) {
	t.Helper()
	if _, err := s.Append(context.Background(), id, NewChanges(1, 10)); err != nil {
		t.Fatal(err)
	}
}

// RecordedMigrations returns a file system with a stand-in for each
// migration in real (which the database has recorded already, so they do
// not run), and the latest version.
func RecordedMigrations(t *testing.T, real fs.FS) (fstest.MapFS, int64) {
	t.Helper()
	ms, err := migrations.Parse(real)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, m := range ms {
		fsys[m.Name] = &fstest.MapFile{Data: []byte("SELECT 1")}
	}
	return fsys, ms[len(ms)-1].Version
}
