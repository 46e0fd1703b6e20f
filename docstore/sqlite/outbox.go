package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// DueEvents implements webhook.Outbox.
func (s *Store) DueEvents(ctx context.Context, now time.Time, limit int) ([]webhook.Event, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: due events: %w", docstore.ErrClosed)
	}
	at := now.UnixMilli()
	events, err := s.queryEvents(ctx, `SELECT `+sqlcommon.OutboxColumns+` FROM outbox
		WHERE delivered_at IS NULL AND failed = 0 AND due_at <= ? AND next_attempt_at <= ?
		ORDER BY id LIMIT ?`, at, at, paging.Clamp(limit))
	if err != nil {
		return nil, fmt.Errorf("sqlite: due events: %w", err)
	}
	return events, nil
}

// MarkDelivered implements webhook.Outbox.
func (s *Store) MarkDelivered(ctx context.Context, id int64, at time.Time) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, failed = 0
			WHERE id = ? AND delivered_at IS NULL`, at.UnixMilli(), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: mark event %d delivered: %w", id, err)
	}
	return nil
}

// MarkFailed implements webhook.Outbox.
func (s *Store) MarkFailed(ctx context.Context, id int64, attempt int, nextAttempt time.Time, lastErr string, gaveUp bool) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, failed = ?
			WHERE id = ? AND delivered_at IS NULL`, max(attempt, 0), nextAttempt.UnixMilli(), lastErr, gaveUp, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: mark event %d failed: %w", id, err)
	}
	return nil
}

// ListDeliveries implements webhook.Outbox.
func (s *Store) ListDeliveries(ctx context.Context, filter webhook.Filter, after int64, limit int) ([]webhook.Event, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", docstore.ErrClosed)
	}
	conds, args, err := sqlcommon.DeliveryConds(filter, true, func() string { return "?" })
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	args = append([]any{after}, args...)
	args = append(args, paging.Clamp(limit))
	events, err := s.queryEvents(ctx, sqlcommon.ListDeliveriesSQL(conds, "?", "?"), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list deliveries: %w", err)
	}
	return events, nil
}

// PruneDeliveries deletes the delivered events delivered before before and
// returns how many it deleted. Pending and failed events stay.
func (s *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE delivered_at < ?`, before.UnixMilli())
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune deliveries: %w", err)
	}
	return n, nil
}

func (s *Store) queryEvents(ctx context.Context, query string, args ...any) ([]webhook.Event, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []webhook.Event
	for rows.Next() {
		var ev webhook.Event
		var doc, kind string
		var created, due, next int64
		var delivered sql.NullInt64
		if err := rows.Scan(&ev.ID, &doc, &kind, &created, &due, &ev.Attempts, &next, &ev.LastError,
			&delivered, &ev.Failed); err != nil {
			return nil, err
		}
		ev.DocID, ev.Kind = wire.DocID(doc), webhook.Kind(kind)
		ev.CreatedAt, ev.DueAt, ev.NextAttemptAt = time.UnixMilli(created), time.UnixMilli(due), time.UnixMilli(next)
		if delivered.Valid {
			ev.DeliveredAt = time.UnixMilli(delivered.Int64)
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}
