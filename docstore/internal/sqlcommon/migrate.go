// Package sqlcommon holds what the SQLite and Postgres stores share: the
// migration runner's dialect-independent half and the outbox's SQL and
// coalescing rule. It is internal to docstore.
package sqlcommon

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/tandem-sync/tandem/migrations"
)

// Migrator is the dialect-specific half of the migration runner: how to
// record versions and apply one migration atomically. RunMigrations is the
// shared half (ordering, version checks), so that the Postgres store, which
// serializes nodes with an advisory lock, reuses it.
type Migrator interface {
	// Prepare creates the schema_migrations table if it is missing.
	Prepare(ctx context.Context) error
	// Applied returns the versions recorded in schema_migrations.
	Applied(ctx context.Context) (map[int64]bool, error)
	// Apply runs m and records its version, in one transaction that first
	// checks, under the dialect's lock, that the version is not recorded
	// yet. It reports whether it ran m (false: another process did).
	Apply(ctx context.Context, m migrations.Migration) (bool, error)
}

// RunMigrations applies the migrations in fsys that the database has not
// recorded yet, in version order, one transaction each. Running it again, or
// from several processes at once, applies nothing twice. It refuses a
// database that records a version newer than any in fsys: that schema was
// written by a newer Tandem.
func RunMigrations(ctx context.Context, fsys fs.FS, mg Migrator) (ran []int64, err error) {
	ms, err := migrations.Parse(fsys)
	if err != nil {
		return nil, err
	}
	if err := mg.Prepare(ctx); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	done, err := mg.Applied(ctx)
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
		ok, err := mg.Apply(ctx, m)
		if err != nil {
			return ran, fmt.Errorf("migrate: %s: %w", m.Name, err)
		}
		if ok {
			ran = append(ran, m.Version)
		}
	}
	return ran, nil
}
