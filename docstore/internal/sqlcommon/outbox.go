package sqlcommon

import (
	"fmt"
	"strings"
	"time"

	"github.com/tandem-sync/tandem/webhook"
)

// The outbox: opened with its WithOutbox option, a store writes
// a change event into its outbox table (migration 0002) in the same
// transaction as the change the event describes, and implements
// webhook.Outbox for a webhook.Sender to deliver them:
//
//   - an Append that creates a document writes a 'created' event, due at
//     once;
//   - an Append that adds changes to a document writes a 'changed' event due
//     after the debounce, unless the document has a pending 'changed' event
//     that is not due yet or waits for a retry (and will not be for a
//     little while yet, see CoalesceHorizon): then the appends coalesce into
//     it, and its payload, made at delivery, carries the heads they led to.
//     A document that is written to all the time still gets an event at
//     least every debounce;
//   - a Delete of a stored document drops the document's pending 'changed'
//     events and writes a 'deleted' event, due at once.
//
// A failed Append or Delete writes no event, and an event is never written
// without its change.

// OutboxOptions is the outbox setting shared by both stores' options.
type OutboxOptions struct {
	// Enabled turns the outbox on.
	Enabled bool
	// Debounce is how long a changed event waits for more appends.
	Debounce time.Duration
}

// CoalesceHorizon returns how far after now a pending 'changed' event must
// still be from being sent for an append at now to coalesce into it. A
// Sender may be reading the document's heads for an event that is due, so
// an append must not rely on an event that is due, nor on one that becomes
// due before the append has committed (or, with several nodes, by another
// node's clock): a quarter of the debounce, at most a second, covers both.
// An append past the horizon writes a new event.
func (o OutboxOptions) CoalesceHorizon(now time.Time) time.Time {
	return now.Add(min(o.Debounce/4, time.Second))
}

// OutboxColumns are the columns scanned into a webhook.Event, in order.
const OutboxColumns = `id, doc_id, kind, created_at, due_at, attempts, next_attempt_at, last_error, delivered_at, failed`

// DeliveryConds returns the WHERE conditions and arguments of a
// ListDeliveries filter, in SQLite's spelling if sqlite is set (SQLite
// stores failed as 0 or 1, Postgres as a boolean). arg returns the
// placeholder for the next argument.
func DeliveryConds(f webhook.Filter, sqlite bool, arg func() string) ([]string, []any, error) {
	failed, notFailed := "failed", "NOT failed"
	if sqlite {
		failed, notFailed = "failed = 1", "failed = 0" // as the partial indexes say
	}
	var conds []string
	switch f.Status {
	case webhook.StatusAll, "":
	case webhook.StatusPending:
		conds = append(conds, "delivered_at IS NULL AND "+notFailed)
	case webhook.StatusDelivered:
		conds = append(conds, "delivered_at IS NOT NULL")
	case webhook.StatusFailed:
		conds = append(conds, failed)
	default:
		return nil, nil, fmt.Errorf("unknown delivery status %q", f.Status)
	}
	var args []any
	if f.DocID != "" {
		conds = append(conds, "doc_id = "+arg())
		args = append(args, string(f.DocID))
	}
	return conds, args, nil
}

// ListDeliveriesSQL returns the ListDeliveries query for the conditions,
// whose last two placeholders are the cursor and the limit.
func ListDeliveriesSQL(conds []string, after, limit string) string {
	where := append([]string{"id > " + after}, conds...)
	return `SELECT ` + OutboxColumns + ` FROM outbox WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY id LIMIT ` + limit
}
