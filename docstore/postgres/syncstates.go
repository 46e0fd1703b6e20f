package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/sync/wire"
)

// LoadSyncState returns the sync state saved for a peer storage on a
// document (room.SyncStates), or nil if none was.
func (p *Store) LoadSyncState(ctx context.Context, id wire.DocID, storageID string) ([]byte, error) {
	var state []byte
	err := p.do(ctx, func(ctx context.Context) error {
		err := p.pool.QueryRow(ctx, `SELECT state FROM sync_states WHERE doc_id = $1 AND storage_id = $2`,
			string(id), storageID).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			state = nil
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: load sync state of %s: %w", id, err)
	}
	return state, nil
}

// SaveSyncState saves (replaces) the sync state of a peer storage on a
// document (room.SyncStates).
func (p *Store) SaveSyncState(ctx context.Context, id wire.DocID, storageID string, state []byte) error {
	err := p.do(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `INSERT INTO sync_states (doc_id, storage_id, state, updated_at) VALUES ($1, $2, $3, $4)
			ON CONFLICT (doc_id, storage_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
			string(id), storageID, state, p.now())
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: save sync state of %s: %w", id, err)
	}
	return nil
}
