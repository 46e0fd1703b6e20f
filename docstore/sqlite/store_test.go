package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/migrations"
	"github.com/tandem-sync/tandem/sync/room"
)

func openTest(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store { return openTest(t, t.TempDir()) },
		Reopen: func(t *testing.T, s room.Store) room.Store {
			dir := filepath.Dir(s.(*Store).Path())
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, dir)
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
	s := openTest(t, dir)
	v1, schema1 := schemaOf(t, s.db)
	wantAllVersions(t, v1)
	s.Close()

	s = openTest(t, dir)
	defer s.Close()
	v2, schema2 := schemaOf(t, s.db)
	wantAllVersions(t, v2)
	if schema1 != schema2 {
		t.Errorf("schema changed on the second open:\n%s\nvs\n%s", schema1, schema2)
	}
	// Running the migrations again directly applies nothing.
	ran, err := sqlcommon.RunMigrations(context.Background(), migrations.SQLite(), migrator{db: s.db, now: time.Now})
	if err != nil || len(ran) != 0 {
		t.Errorf("third run applied %v, %v; want nothing", ran, err)
	}
}

func TestSQLiteConcurrentOpen(t *testing.T) {
	for i := range 5 {
		dir := t.TempDir()
		stores := storetest.OpenTwoAtOnce(t, i, func() (*Store, error) { return Open(context.Background(), dir) })
		versions, _ := schemaOf(t, stores[0].db)
		wantAllVersions(t, versions)

		storetest.CheckSharedStores(t, i, stores[0], stores[1])
	}
}

func TestSQLiteConnectionSettings(t *testing.T) {
	s := openTest(t, t.TempDir(), WithReadConns(3), WithBusyTimeout(1234*time.Millisecond))
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

func TestSQLiteRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if _, err := s.db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err := Open(context.Background(), dir); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}

func TestRunMigrations(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	mg := migrator{db: s.db, now: time.Now}
	// The real migrations, recorded already by Open, then new ones.
	fsys, latest := storetest.RecordedMigrations(t, migrations.SQLite())
	v1, v2, v3 := latest+1, latest+2, latest+3
	fsys[fmt.Sprintf("%04d_a.sql", v1)] = &fstest.MapFile{Data: []byte("CREATE TABLE t2 (x INTEGER) STRICT; INSERT INTO t2 VALUES (1), (2);")}
	ran, err := sqlcommon.RunMigrations(ctx, fsys, mg)
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
	if ran, err = sqlcommon.RunMigrations(ctx, fsys, mg); err == nil {
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

func TestSQLiteOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b?c#d%20e")
	openTest(t, dir).Close()
	if _, err := os.Stat(filepath.Join(dir, File)); err != nil {
		t.Fatalf("database not at the expected path: %v", err)
	}
}
