package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// lockOutboxSQL is appendTx's first statement when the outbox is enabled:
// lockSQL, and a 'created' event for every document it inserted (RETURNING
// leaves out the conflicting rows, which it does not update).
const lockOutboxSQL = `WITH new AS (
	INSERT INTO docs AS d (doc_id, created_at, updated_at) SELECT unnest($1::text[]), $2, $2
	ON CONFLICT (doc_id) DO UPDATE SET updated_at = d.updated_at WHERE false
	RETURNING doc_id
)
INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
SELECT doc_id, 'created', $2, $2, $2 FROM new ORDER BY doc_id`

// appendOutboxSQL is appendTx's second statement when the outbox is
// enabled: appendSQL, and a 'changed' event, due at $6, for every document
// that got new changes and has no pending 'changed' event that will not be
// sent before $7 (see sqlcommon.OutboxOptions.coalesceHorizon). The documents are
// locked, so no other append checks the same document meanwhile.
const appendOutboxSQL = appendCTEs + `, changed AS (
	INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
	SELECT upd.doc_id, 'changed', $4, $6, $4 FROM upd
	WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.doc_id = upd.doc_id AND o.kind = 'changed'
		AND o.delivered_at IS NULL AND NOT o.failed AND greatest(o.due_at, o.next_attempt_at) > $7)
	ORDER BY upd.doc_id
)
` + appendResult

// deleteOutboxSQL is Delete's statement when the outbox is enabled: if the
// document was stored, it drops its pending 'changed' events and writes a
// 'deleted' event.
const deleteOutboxSQL = `WITH states AS (
	DELETE FROM sync_states WHERE doc_id = $1
), del AS (
	DELETE FROM docs WHERE doc_id = $1 RETURNING doc_id
), dropped AS (
	DELETE FROM outbox WHERE doc_id = $1 AND kind = 'changed' AND delivered_at IS NULL AND NOT failed
		AND EXISTS (SELECT 1 FROM del)
)
INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
SELECT doc_id, 'deleted', $2, $2, $2 FROM del`

// DueEvents implements webhook.Outbox. With WithEventClaims, the events
// it returns are claimed: see claimSQL.
func (p *Store) DueEvents(ctx context.Context, now time.Time, limit int) ([]webhook.Event, error) {
	var events []webhook.Event
	var err error
	if lease := p.opts.claimLease; lease > 0 {
		events, err = p.queryEvents(ctx, claimSQL, now, paging.Clamp(limit), now.Add(lease))
		slices.SortFunc(events, func(a, b webhook.Event) int { return cmp.Compare(a.ID, b.ID) })
	} else {
		events, err = p.queryEvents(ctx, `SELECT `+sqlcommon.OutboxColumns+` FROM outbox
		WHERE delivered_at IS NULL AND NOT failed AND due_at <= $1 AND next_attempt_at <= $1
		ORDER BY id LIMIT $2`, now, paging.Clamp(limit))
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: due events: %w", err)
	}
	return events, nil
}

// claimSQL is DueEvents' statement with WithEventClaims: it takes the due
// events that no other node's DueEvents is taking at the same moment (FOR
// UPDATE SKIP LOCKED) and moves their next attempt to $3, the end of the
// claim, so that no other node takes them before the claiming node marks
// them delivered or failed, or, if it died, before the claim ends. The
// events are returned as they were before the claim.
const claimSQL = `WITH due AS (
	SELECT id, next_attempt_at FROM outbox
	WHERE delivered_at IS NULL AND NOT failed AND due_at <= $1 AND next_attempt_at <= $1
	ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET next_attempt_at = $3 FROM due WHERE o.id = due.id
RETURNING o.id, o.doc_id, o.kind, o.created_at, o.due_at, o.attempts, due.next_attempt_at, o.last_error, o.delivered_at, o.failed`

// MarkDelivered implements webhook.Outbox.
func (p *Store) MarkDelivered(ctx context.Context, id int64, at time.Time) error {
	err := p.do(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, failed = false
			WHERE id = $1 AND delivered_at IS NULL`, id, at)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: mark event %d delivered: %w", id, err)
	}
	return nil
}

// MarkFailed implements webhook.Outbox.
func (p *Store) MarkFailed(ctx context.Context, id int64, attempt int, nextAttempt time.Time, lastErr string, gaveUp bool) error {
	err := p.do(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `UPDATE outbox SET attempts = $2, next_attempt_at = $3, last_error = $4, failed = $5
			WHERE id = $1 AND delivered_at IS NULL`, id, max(attempt, 0), nextAttempt, lastErr, gaveUp)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: mark event %d failed: %w", id, err)
	}
	return nil
}

// ListDeliveries implements webhook.Outbox.
func (p *Store) ListDeliveries(ctx context.Context, filter webhook.Filter, after int64, limit int) ([]webhook.Event, error) {
	n := 1 // $1 is the cursor
	conds, args, err := sqlcommon.DeliveryConds(filter, false, func() string { n++; return "$" + strconv.Itoa(n) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list deliveries: %w", err)
	}
	args = append([]any{after}, args...)
	args = append(args, paging.Clamp(limit))
	events, err := p.queryEvents(ctx, sqlcommon.ListDeliveriesSQL(conds, "$1", "$"+strconv.Itoa(n+1)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list deliveries: %w", err)
	}
	return events, nil
}

// PruneDeliveries deletes the delivered events delivered before before and
// returns how many it deleted. Pending and failed events stay.
func (p *Store) PruneDeliveries(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := p.do(ctx, func(ctx context.Context) error {
		tag, err := p.pool.Exec(ctx, `DELETE FROM outbox WHERE delivered_at < $1`, before)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("postgres: prune deliveries: %w", err)
	}
	return n, nil
}

func (p *Store) queryEvents(ctx context.Context, query string, args ...any) ([]webhook.Event, error) {
	var out []webhook.Event
	err := p.do(ctx, func(ctx context.Context) error {
		out = out[:0]
		rows, err := p.pool.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		var ev webhook.Event
		var doc, kind string
		var delivered *time.Time
		_, err = pgx.ForEachRow(rows, []any{&ev.ID, &doc, &kind, &ev.CreatedAt, &ev.DueAt, &ev.Attempts,
			&ev.NextAttemptAt, &ev.LastError, &delivered, &ev.Failed}, func() error {
			e := ev
			e.DocID, e.Kind = wire.DocID(doc), webhook.Kind(kind)
			if delivered != nil {
				e.DeliveredAt = *delivered
			}
			out = append(out, e)
			return nil
		})
		return err
	})
	return out, err
}
