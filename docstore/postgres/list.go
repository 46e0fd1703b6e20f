package postgres

import (
	"context"
	"fmt"

	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// List implements paginated listing for the Postgres store, like
// SQLite.List.
func (p *Store) List(ctx context.Context, after wire.DocID, limit int) ([]room.DocStat, error) {
	limit = paging.Clamp(limit)
	var out []room.DocStat
	err := p.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := p.pool.Query(ctx, `SELECT doc_id, size_bytes, coalesce(octet_length(snapshot), 0),
				last_seq, created_at, updated_at
			FROM docs WHERE doc_id > $1 ORDER BY doc_id LIMIT $2`, string(after), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st room.DocStat
			var id string
			if err := rows.Scan(&id, &st.Size, &st.SnapshotSize, &st.Changes, &st.CreatedAt, &st.UpdatedAt); err != nil {
				return err
			}
			st.ID = wire.DocID(id)
			out = append(out, st)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: list: %w", err)
	}
	return out, nil
}

// Ping checks that Postgres answers, for readiness checks.
func (p *Store) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}
