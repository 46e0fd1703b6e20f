package docstore

import (
	"context"
	"database/sql"
	"fmt"
	"io/fs"
	"time"

	"github.com/tandem-sync/tandem/migrations"
)

// migrator is the dialect-specific half of the migration runner: how to
// record versions and apply one migration atomically. runMigrations is the
// shared half (ordering, version checks), so that the Postgres store, which
// serializes nodes with an advisory lock, reuses it.
type migrator interface {
	// prepare creates the schema_migrations table if it is missing.
	prepare(ctx context.Context) error
	// applied returns the versions recorded in schema_migrations.
	applied(ctx context.Context) (map[int64]bool, error)
	// apply runs m and records its version, in one transaction that first
	// checks, under the dialect's lock, that the version is not recorded
	// yet. It reports whether it ran m (false: another process did).
	apply(ctx context.Context, m migrations.Migration) (bool, error)
}

// runMigrations applies the migrations in fsys that the database has not
// recorded yet, in version order, one transaction each. Running it again, or
// from several processes at once, applies nothing twice. It refuses a
// database that records a version newer than any in fsys: that schema was
// written by a newer Tandem.
func runMigrations(ctx context.Context, fsys fs.FS, mg migrator) (ran []int64, err error) {
	ms, err := migrations.Parse(fsys)
	if err != nil {
		return nil, err
	}
	if err := mg.prepare(ctx); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := mg.applied(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: read schema_migrations: %w", err)
	}
	var latest int64
	if len(ms) > 0 {
		latest = ms[len(ms)-1].Version
	}
	for v := range done {
		if v > latest {
			return nil, fmt.Errorf("migrate: database has schema version %d, newer than this build's latest (%d)", v, latest)
		}
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		ok, err := mg.apply(ctx, m)
		if err != nil {
			return ran, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if ok {
			ran = append(ran, m.Version)
		}
	}
	return ran, nil
}

// sqliteMigrator applies migrations to a SQLite database whose DSN sets
// _txlock=immediate, so that each migration's transaction starts with BEGIN
// IMMEDIATE and takes the database's write lock at once: two processes
// migrating the same file serialize (under busy_timeout) instead of both
// deciding that a version is missing.
type sqliteMigrator struct {
	db  *sql.DB
	now func() time.Time
}

func (m sqliteMigrator) prepare(ctx context.Context) error {
	tx, err := m.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL -- unix milliseconds
	) STRICT`); err != nil {
		return err
	}
	return tx.Commit()
}

func (m sqliteMigrator) applied(ctx context.Context) (map[int64]bool, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	done := make(map[int64]bool)
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		done[v] = true
	}
	return done, rows.Err()
}

func (m sqliteMigrator) apply(ctx context.Context, mig migrations.Migration) (bool, error) {
	tx, err := m.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after Commit
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, mig.Version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, mig.SQL); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		mig.Version, mig.Name, m.now().UnixMilli()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}
