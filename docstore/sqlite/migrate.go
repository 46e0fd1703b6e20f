package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/tandem-sync/tandem/migrations"
)

// migrator applies migrations to a SQLite database whose DSN sets
// _txlock=immediate, so that each migration's transaction starts with BEGIN
// IMMEDIATE and takes the database's write lock at once: two processes
// migrating the same file serialize (under busy_timeout) instead of both
// deciding that a version is missing.
type migrator struct {
	db  *sql.DB
	now func() time.Time
}

func (m migrator) Prepare(ctx context.Context) error {
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

func (m migrator) Applied(ctx context.Context) (map[int64]bool, error) {
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

func (m migrator) Apply(ctx context.Context, mig migrations.Migration) (bool, error) {
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
