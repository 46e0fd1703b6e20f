package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// List implements paginated listing for the SQLite store: up to limit
// documents whose IDs sort after the cursor after (empty: from the start),
// in ID order.
func (s *Store) List(ctx context.Context, after wire.DocID, limit int) ([]room.DocStat, error) {
	limit = paging.Clamp(limit)
	rows, err := s.db.QueryContext(ctx, `SELECT doc_id, size_bytes, coalesce(length(snapshot), 0),
			last_seq, created_at, updated_at
		FROM docs WHERE doc_id > ? ORDER BY doc_id LIMIT ?`, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []room.DocStat
	for rows.Next() {
		var st room.DocStat
		var id string
		var created, updated int64
		if err := rows.Scan(&id, &st.Size, &st.SnapshotSize, &st.Changes, &created, &updated); err != nil {
			return nil, fmt.Errorf("sqlite: list: %w", err)
		}
		st.ID, st.CreatedAt, st.UpdatedAt = wire.DocID(id), time.UnixMilli(created), time.UnixMilli(updated)
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	return out, nil
}
