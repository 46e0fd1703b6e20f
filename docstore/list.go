package docstore

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// MaxListLimit bounds one page of List.
const MaxListLimit = 1000

// List implements paginated listing for the SQLite store: up to limit
// documents whose IDs sort after the cursor after (empty: from the start),
// in ID order.
func (s *SQLite) List(ctx context.Context, after wire.DocID, limit int) ([]DocStat, error) {
	limit = clampLimit(limit)
	rows, err := s.db.QueryContext(ctx, `SELECT doc_id, size_bytes, coalesce(length(snapshot), 0), change_count,
			last_seq, snapshot_seq, created_at, updated_at
		FROM docs WHERE doc_id > ? ORDER BY doc_id LIMIT ?`, string(after), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list: %w", err)
	}
	defer rows.Close()
	var out []DocStat
	for rows.Next() {
		var st DocStat
		var id string
		var created, updated int64
		if err := rows.Scan(&id, &st.Size, &st.SnapshotSize, &st.ChangeCount, &st.LastSeq, &st.SnapshotSeq, &created, &updated); err != nil {
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

// List implements paginated listing for the Postgres store, like
// SQLite.List.
func (p *Postgres) List(ctx context.Context, after wire.DocID, limit int) ([]DocStat, error) {
	limit = clampLimit(limit)
	var out []DocStat
	err := p.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := p.pool.Query(ctx, `SELECT doc_id, size_bytes, coalesce(octet_length(snapshot), 0), change_count,
				last_seq, snapshot_seq, created_at, updated_at
			FROM docs WHERE doc_id > $1 ORDER BY doc_id LIMIT $2`, string(after), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var st DocStat
			var id string
			if err := rows.Scan(&id, &st.Size, &st.SnapshotSize, &st.ChangeCount, &st.LastSeq, &st.SnapshotSeq, &st.CreatedAt, &st.UpdatedAt); err != nil {
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
func (p *Postgres) Ping(ctx context.Context) error {
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

func clampLimit(limit int) int {
	if limit <= 0 || limit > MaxListLimit {
		return MaxListLimit
	}
	return limit
}
