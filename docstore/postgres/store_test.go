package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/migrations"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// newTestDatabase creates an empty database for t on the test server (see
// storetest.NewPostgresDatabase) and returns its URL.
func newTestDatabase(t testing.TB) string {
	t.Helper()
	return storetest.NewPostgresDatabase(t)
}

// withParam adds a connection parameter to a postgres:// URL or key=value
// connection string.
func withParam(conn, key, value string) string {
	if u, err := url.Parse(conn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return conn + " " + key + "=" + value
}

func openTest(t testing.TB, url string, opts ...Option) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Open(ctx, url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return p
}

// testConn opens a plain connection to url for the test to inspect or
// disturb the database with.
func testConn(t testing.TB, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestPostgresConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store { return openTest(t, newTestDatabase(t)) },
		Reopen: func(t *testing.T, s room.Store) room.Store {
			url := s.(*Store).connString
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, url)
		},
	})
}

func TestPostgresConformanceWithoutGroupCommit(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		Open: func(t *testing.T) room.Store { return openTest(t, newTestDatabase(t), WithGroupCommit(false)) },
		Reopen: func(t *testing.T, s room.Store) room.Store {
			url := s.(*Store).connString
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			return openTest(t, url, WithGroupCommit(false))
		},
	})
}

// pgSchemaOf returns the versions in schema_migrations (sorted) and a text
// description of the tables, columns, indexes and constraints.
func pgSchemaOf(t *testing.T, url string) ([]int64, string) {
	t.Helper()
	conn := testConn(t, url)
	ctx := context.Background()
	rows, _ := conn.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	var schema string
	if err := conn.QueryRow(ctx, `SELECT
		(SELECT string_agg(format('%s.%s %s %s %s %s', table_name, column_name, data_type, collation_name,
			is_nullable, column_default), E'\n' ORDER BY table_name, ordinal_position)
		 FROM information_schema.columns WHERE table_schema = current_schema()) || E'\n' ||
		(SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE schemaname = current_schema()) || E'\n' ||
		(SELECT string_agg(conrelid::regclass || ' ' || pg_get_constraintdef(oid), E'\n' ORDER BY 1)
		 FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	return versions, schema
}

func wantAllPostgresVersions(t *testing.T, versions []int64) {
	t.Helper()
	ms, err := migrations.Parse(migrations.Postgres())
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int64, len(ms))
	for i, m := range ms {
		want[i] = m.Version
	}
	if fmt.Sprint(versions) != fmt.Sprint(want) {
		t.Fatalf("schema_migrations holds %v, want each of %v once", versions, want)
	}
}

func TestPostgresMigrateTwice(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	openTest(t, url).Close()
	v1, schema1 := pgSchemaOf(t, url)
	wantAllPostgresVersions(t, v1)
	for _, table := range []string{"docs", "changes", "meta"} {
		if !strings.Contains(schema1, table+".doc_id") && !strings.Contains(schema1, table+".key") {
			t.Errorf("schema lacks table %s:\n%s", table, schema1)
		}
	}
	openTest(t, url).Close()
	if err := Migrate(context.Background(), url); err != nil {
		t.Fatalf("Migrate on a migrated database: %v", err)
	}
	v2, schema2 := pgSchemaOf(t, url)
	wantAllPostgresVersions(t, v2)
	if schema1 != schema2 {
		t.Errorf("schema changed by migrating again:\n%s\nvs\n%s", schema1, schema2)
	}
}

func TestPostgresConcurrentOpen(t *testing.T) {
	t.Parallel()
	for round := range 3 {
		url := newTestDatabase(t)
		stores := storetest.OpenTwoAtOnce(t, round, func() (*Store, error) { return Open(context.Background(), url) })
		versions, _ := pgSchemaOf(t, url)
		wantAllPostgresVersions(t, versions)

		storetest.CheckSharedStores(t, round, stores[0], stores[1])
	}
}

// TestHelperMigrate is not a test on its own: TestPostgresMigrateProcesses
// runs the test binary with it to migrate from another process.
func TestHelperMigrate(t *testing.T) {
	url := os.Getenv("TANDEM_TEST_MIGRATE_URL")
	if url == "" {
		return
	}
	if at, err := strconv.ParseInt(os.Getenv("TANDEM_TEST_MIGRATE_AT"), 10, 64); err == nil {
		time.Sleep(time.Until(time.Unix(0, at))) // start together with the other process
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresMigrateProcesses migrates a fresh database from two processes
// started at the same moment.
func TestPostgresMigrateProcesses(t *testing.T) {
	t.Parallel()
	for round := range 2 {
		url := newTestDatabase(t)
		at := time.Now().Add(500 * time.Millisecond).UnixNano()
		outs := make([][]byte, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperMigrate$", "-test.count=1")
				cmd.Env = append(os.Environ(), "TANDEM_TEST_MIGRATE_URL="+url,
					"TANDEM_TEST_MIGRATE_AT="+strconv.FormatInt(at, 10))
				outs[i], errs[i] = cmd.CombinedOutput()
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: process %d: %v\n%s", round, i, err, outs[i])
			}
		}
		versions, _ := pgSchemaOf(t, url)
		wantAllPostgresVersions(t, versions)
		s := openTest(t, url)
		if _, err := s.Append(context.Background(), wire.NewDocID(), storetest.NewChanges(2, 10)); err != nil {
			t.Errorf("round %d: Append after migrating: %v", round, err)
		}
		s.Close()
	}
}

// TestPostgresMigrationLock checks that start-up waits for the migration
// lock, and gives up with its context.
func TestPostgresMigrationLock(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	holder := testConn(t, url)
	ctx := context.Background()
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_lock($1)`, pgMigrationLock); err != nil {
		t.Fatal(err)
	}

	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if s, err := Open(short, url); err == nil {
		s.Close()
		t.Fatal("Open succeeded while another session held the migration lock")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open under a held lock: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Open gave up after %v, long after its 300ms deadline", d)
	}

	// Sessions waiting for the lock: the one that gave up may still be
	// among them (its backend notices the closed connection only once it
	// gets the lock).
	waiting := func() int {
		var n int
		if err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := waiting()
	done := make(chan error, 1)
	go func() {
		s, err := Open(ctx, url)
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); waiting() <= before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Open never waited for the migration lock")
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Open returned (%v) while the lock was held", err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_unlock($1)`, pgMigrationLock); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Open after the lock was released: %v", err)
	}
	versions, _ := pgSchemaOf(t, url)
	wantAllPostgresVersions(t, versions)
}

func TestPostgresRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	openTest(t, url).Close()
	if _, err := testConn(t, url).Exec(context.Background(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, 'future.sql', now())`); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(context.Background(), url); err == nil {
		s.Close()
		t.Fatal("Open of a database with a newer schema succeeded")
	}
}

func TestRunMigrationsPostgres(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	openTest(t, url).Close()
	conn := testConn(t, url)
	ctx := context.Background()
	mg := migrator{conn: conn, now: time.Now}
	// The real migrations, recorded already by Open, then new ones.
	fsys, latest := storetest.RecordedMigrations(t, migrations.Postgres())
	v1, v2, v3 := latest+1, latest+2, latest+3
	fsys[fmt.Sprintf("%04d_a.sql", v1)] = &fstest.MapFile{Data: []byte("CREATE TABLE t2 (x int); INSERT INTO t2 VALUES (1), (2);")}
	ran, err := sqlcommon.RunMigrations(ctx, fsys, mg)
	if err != nil || fmt.Sprint(ran) != fmt.Sprint([]int64{v1}) {
		t.Fatalf("runMigrations = %v, %v; want [%d]", ran, err, v1)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM t2`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("t2 has %d rows, %v; want 2 (both statements of the file ran)", n, err)
	}
	// A failing file is rolled back whole (DDL included) and not recorded;
	// the ones before it stay applied.
	fsys[fmt.Sprintf("%04d_ok.sql", v2)] = &fstest.MapFile{Data: []byte("CREATE TABLE t3 (x int);")}
	fsys[fmt.Sprintf("%04d_bad.sql", v3)] = &fstest.MapFile{Data: []byte("CREATE TABLE t4 (x int); SELECT * FROM missing;")}
	if ran, err = sqlcommon.RunMigrations(ctx, fsys, mg); err == nil {
		t.Fatal("runMigrations with a bad file succeeded")
	}
	if fmt.Sprint(ran) != fmt.Sprint([]int64{v2}) {
		t.Errorf("ran %v before failing, want [%d]", ran, v2)
	}
	rows, _ := conn.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || int64(len(versions)) != v2 || versions[len(versions)-1] != v2 {
		t.Errorf("recorded versions %v, %v; want 1 to %d", versions, err, v2)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename IN ('t3', 't4')`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d of tables t3 (applied), t4 (failed) exist, %v; want only t3", n, err)
	}
}

func TestPostgresUnreachableAtOpen(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	s, err := Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable")
	if err == nil {
		s.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open took %v to fail", d)
	}
	if err := Migrate(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable"); err == nil {
		t.Error("Migrate of an unreachable server succeeded")
	}
}

func TestPostgresClosed(t *testing.T) {
	t.Parallel()
	for _, gc := range []bool{true, false} {
		s := openTest(t, newTestDatabase(t), WithGroupCommit(gc))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		ctx := context.Background()
		id := wire.NewDocID()
		if _, err := s.Append(ctx, id, storetest.NewChanges(1, 1)); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("group commit %v: Append after Close: %v", gc, err)
		}
		if _, err := s.Append(ctx, id, nil); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("empty Append after Close: %v", err)
		}
		if _, err := s.Load(ctx, id); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("Load after Close: %v", err)
		}
		if _, err := s.Stat(ctx, id); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("Stat after Close: %v", err)
		}
		if err := s.Compact(ctx, id, []byte{1}, nil, 0); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("Compact after Close: %v", err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("Delete after Close: %v", err)
		}
		if _, err := s.StorageID(ctx); !errors.Is(err, docstore.ErrClosed) {
			t.Errorf("StorageID after Close: %v", err)
		}
	}
}

func TestPostgresSynchronousCommit(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url)
	defer s.Close()
	var setting string
	if err := s.pool.QueryRow(context.Background(), `SHOW synchronous_commit`).Scan(&setting); err != nil || setting != "on" {
		t.Errorf("synchronous_commit = %q, %v; want on", setting, err)
	}
	off := withParam(url, "synchronous_commit", "off")
	if s, err := Open(context.Background(), off); err == nil {
		s.Close()
		t.Error("Open with synchronous_commit=off succeeded")
	}
}
