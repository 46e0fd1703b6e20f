package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/migrations"
)

// pgMigrationLock is the key of the session-level advisory lock that
// serializes migration runs on one database ("tandem" in ASCII, then 1).
// Advisory locks are per database, so Tandem databases sharing a cluster do
// not wait for each other.
const pgMigrationLock int64 = 0x74616e64656d_0001

// Migrate brings the schema of the PostgreSQL database at url up to
// date, as Open does on start-up; it is what `tandem migrate` runs.
// Several processes may run it (or Open) at once: they take turns
// under an advisory lock, and each migration is applied once.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if err := migrate(ctx, conn, time.Now); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// migrate runs the migrations on conn while holding the migration
// lock on it: nodes starting together take turns, and the second finds
// everything applied. The lock is a session lock, so it also goes away if
// conn dies; if unlocking fails, conn is closed for that reason.
func migrate(ctx context.Context, conn *pgx.Conn, now func() time.Time) (err error) {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, pgMigrationLock); err != nil {
		return fmt.Errorf("migrate: take the migration lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, pgMigrationLock); uerr != nil {
			_ = conn.Close(uctx)
			if err == nil {
				err = fmt.Errorf("migrate: release the migration lock: %w", uerr)
			}
		}
	}()
	_, err = sqlcommon.RunMigrations(ctx, migrations.Postgres(), migrator{conn: conn, now: now})
	return err
}

// migrator applies migrations over one connection that holds the
// migration lock (see migrate), each in its own transaction. A
// migration file may hold several statements: Exec without arguments sends
// it with the simple query protocol, inside the transaction.
type migrator struct {
	conn *pgx.Conn
	now  func() time.Time
}

func (m migrator) Prepare(ctx context.Context) error {
	_, err := m.conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    bigint      NOT NULL PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL
	)`)
	return err
}

func (m migrator) Applied(ctx context.Context) (map[int64]bool, error) {
	rows, err := m.conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return nil, err
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	done := make(map[int64]bool, len(versions))
	for _, v := range versions {
		done[v] = true
	}
	return done, nil
}

func (m migrator) Apply(ctx context.Context, mig migrations.Migration) (bool, error) {
	tx, err := m.conn.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	// The advisory lock already keeps other runners out; checking again
	// inside the transaction keeps apply correct on its own.
	var done bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`,
		mig.Version).Scan(&done); err != nil {
		return false, err
	}
	if done {
		return false, nil
	}
	if _, err := tx.Exec(ctx, mig.SQL); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
		mig.Version, mig.Name, m.now()); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}
