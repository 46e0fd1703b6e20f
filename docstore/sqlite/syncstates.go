package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/tandem-sync/tandem/sync/wire"
)

// LoadSyncState returns the sync state saved for a peer storage on a
// document (room.SyncStates), or nil if none was.
func (s *Store) LoadSyncState(ctx context.Context, id wire.DocID, storageID string) ([]byte, error) {
	var state []byte
	err := s.db.QueryRowContext(ctx, `SELECT state FROM sync_states WHERE doc_id = ? AND storage_id = ?`,
		string(id), storageID).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: load sync state of %s: %w", id, err)
	}
	return state, nil
}

// SaveSyncState saves (replaces) the sync state of a peer storage on a
// document (room.SyncStates).
func (s *Store) SaveSyncState(ctx context.Context, id wire.DocID, storageID string, state []byte) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sync_states (doc_id, storage_id, state, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (doc_id, storage_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at`,
			string(id), storageID, state, s.now().UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: save sync state of %s: %w", id, err)
	}
	return nil
}
