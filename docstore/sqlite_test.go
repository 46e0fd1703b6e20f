package docstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/migrations"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

func openTestSQLite(t testing.TB, dir string, opts ...SQLiteOption) *SQLite {
	t.Helper()
	s, err := OpenSQLite(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store { return openTestSQLite(t, t.TempDir()) },
		Reopen: func(t *testing.T, s room.Store) room.Store {
			dir := filepath.Dir(s.(*SQLite).Path())
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTestSQLite(t, dir)
		},
	})
}

// schemaOf returns the versions in schema_migrations (sorted) and the
// schema's SQL text.
func schemaOf(t *testing.T, db *sql.DB) ([]int64, string) {
	t.Helper()
	var versions []int64
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := db.QueryRow(`SELECT group_concat(sql, ';') FROM (SELECT sql FROM sqlite_schema
		WHERE sql IS NOT NULL ORDER BY name)`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	return versions, schema
}

func wantAllVersions(t *testing.T, versions []int64) {
	t.Helper()
	ms, err := migrations.Parse(migrations.SQLite())
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(ms) {
		t.Fatalf("schema_migrations holds %v, want each of the %d migrations once", versions, len(ms))
	}
	for i, m := range ms {
		if versions[i] != m.Version {
			t.Fatalf("schema_migrations holds %v, want %d at %d", versions, m.Version, i)
		}
	}
}

func TestSQLiteMigrateTwice(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	v1, schema1 := schemaOf(t, s.db)
	wantAllVersions(t, v1)
	s.Close()

	s = openTestSQLite(t, dir)
	defer s.Close()
	v2, schema2 := schemaOf(t, s.db)
	wantAllVersions(t, v2)
	if schema1 != schema2 {
		t.Errorf("schema changed on the second open:\n%s\nvs\n%s", schema1, schema2)
	}
	// Running the migrations again directly applies nothing.
	ran, err := runMigrations(context.Background(), migrations.SQLite(), sqliteMigrator{db: s.db, now: time.Now})
	if err != nil || len(ran) != 0 {
		t.Errorf("third run applied %v, %v; want nothing", ran, err)
	}
}

func TestSQLiteConcurrentOpen(t *testing.T) {
	for i := range 5 {
		dir := t.TempDir()
		stores := openTwoAtOnce(t, i, func() (*SQLite, error) { return OpenSQLite(context.Background(), dir) })
		versions, _ := schemaOf(t, stores[0].db)
		wantAllVersions(t, versions)

		checkSharedStores(t, i, stores[0], stores[1])
	}
}

func TestSQLiteConnectionSettings(t *testing.T) {
	s := openTestSQLite(t, t.TempDir(), WithReadConns(3), WithBusyTimeout(1234*time.Millisecond))
	defer s.Close()
	ctx := context.Background()
	// Check every connection of the pool, not just the first.
	var conns []*sql.Conn
	for range 4 {
		c, err := s.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		var mode string
		var syncMode, fk, busy int
		for _, q := range []struct {
			pragma string
			dst    any
		}{{"journal_mode", &mode}, {"synchronous", &syncMode}, {"foreign_keys", &fk}, {"busy_timeout", &busy}} {
			if err := c.QueryRowContext(ctx, "PRAGMA "+q.pragma).Scan(q.dst); err != nil {
				t.Fatal(err)
			}
		}
		if mode != "wal" || syncMode != 2 || fk != 1 || busy != 1234 {
			t.Errorf("conn %d: journal_mode=%s synchronous=%d foreign_keys=%d busy_timeout=%d; want wal 2 1 1234",
				i, mode, syncMode, fk, busy)
		}
		c.Close()
	}
}

func TestSQLiteStat(t *testing.T) {
	ctx := context.Background()
	now := time.UnixMilli(1_700_000_000_000)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func() { mu.Lock(); now = now.Add(time.Second); mu.Unlock() }
	s := openTestSQLite(t, t.TempDir(), WithClock(clock))
	defer s.Close()

	id := wire.NewDocID()
	if _, err := s.Stat(ctx, id); !errors.Is(err, room.ErrNotFound) {
		t.Fatalf("Stat(unknown) error = %v, want room.ErrNotFound", err)
	}
	created := clock()
	changes := storetest.NewChanges(3, 100)
	last, err := s.Append(ctx, id, append(changes, changes[0]))
	if err != nil {
		t.Fatal(err)
	}
	want := DocStat{ID: id, Size: 300, ChangeCount: 3, LastSeq: last, CreatedAt: created, UpdatedAt: created}
	if st, err := s.Stat(ctx, id); err != nil || st != want {
		t.Errorf("Stat = %+v, %v;\nwant %+v", st, err, want)
	}
	tick()
	if err := s.Compact(ctx, id, make([]byte, 50), storetest.NewHeads(1), last-1); err != nil {
		t.Fatal(err)
	}
	want = DocStat{ID: id, Size: 150, SnapshotSize: 50, ChangeCount: 1, LastSeq: last, SnapshotSeq: last - 1,
		CreatedAt: created, UpdatedAt: clock()}
	if st, err := s.Stat(ctx, id); err != nil || st != want {
		t.Errorf("Stat after Compact = %+v, %v;\nwant %+v", st, err, want)
	}
	tick()
	if last, err = s.Append(ctx, id, storetest.NewChanges(1, 7)); err != nil {
		t.Fatal(err)
	}
	want.Size, want.ChangeCount, want.LastSeq, want.UpdatedAt = 157, 2, last, clock()
	if st, err := s.Stat(ctx, id); err != nil || st != want {
		t.Errorf("Stat after Append = %+v, %v;\nwant %+v", st, err, want)
	}
}

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := OpenSQLite(context.Background(), dir); err == nil {
		s.Close()
		t.Fatal("OpenSQLite of a database with a newer schema succeeded")
	}
}

func TestRunMigrations(t *testing.T) {
	s := openTestSQLite(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	mg := sqliteMigrator{db: s.db, now: time.Now}
	// The real migrations, recorded already by OpenSQLite, then new ones.
	fsys, latest := recordedMigrations(t, migrations.SQLite())
	v1, v2, v3 := latest+1, latest+2, latest+3
	fsys[fmt.Sprintf("%04d_a.sql", v1)] = &fstest.MapFile{Data: []byte("CREATE TABLE t2 (x INTEGER) STRICT; INSERT INTO t2 VALUES (1), (2);")}
	ran, err := runMigrations(ctx, fsys, mg)
	if err != nil || fmt.Sprint(ran) != fmt.Sprint([]int64{v1}) {
		t.Fatalf("runMigrations = %v, %v; want [%d]", ran, err, v1)
	}
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM t2`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("t2 has %d rows, %v; want 2 (both statements of the file ran)", n, err)
	}
	// A failing file is rolled back whole and not recorded; the ones
	// before it stay applied.
	fsys[fmt.Sprintf("%04d_ok.sql", v2)] = &fstest.MapFile{Data: []byte("CREATE TABLE t3 (x INTEGER) STRICT;")}
	fsys[fmt.Sprintf("%04d_bad.sql", v3)] = &fstest.MapFile{Data: []byte("CREATE TABLE t4 (x INTEGER) STRICT; SELECT * FROM missing;")}
	if ran, err = runMigrations(ctx, fsys, mg); err == nil {
		t.Fatal("runMigrations with a bad file succeeded")
	}
	if fmt.Sprint(ran) != fmt.Sprint([]int64{v2}) {
		t.Errorf("ran %v before failing, want [%d]", ran, v2)
	}
	versions, _ := schemaOf(t, s.db)
	if last := versions[len(versions)-1]; int64(len(versions)) != v2 || last != v2 {
		t.Errorf("recorded versions %v, want 1 to %d", versions, v2)
	}
	if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name IN ('t3', 't4')`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d of tables t3 (applied), t4 (failed) exist, %v; want only t3", n, err)
	}
}

// recordedMigrations returns a file system with a stand-in for each
// migration in real (which the database has recorded already, so they do
// not run), and the latest version.
func recordedMigrations(t *testing.T, real fs.FS) (fstest.MapFS, int64) {
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

func TestSQLiteOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%20e")
	openTestSQLite(t, dir).Close()
	if _, err := os.Stat(filepath.Join(dir, SQLiteFile)); err != nil {
		t.Fatalf("database not at the expected path: %v", err)
	}
}
