package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// Kind is what happened to a document.
type Kind string

// The kinds of change events.
const (
	// Created: the document was stored for the first time.
	Created Kind = "created"
	// Changed: changes were appended to the document. One event stands for
	// all the appends of its debounce window.
	Changed Kind = "changed"
	// Deleted: the document was deleted.
	Deleted Kind = "deleted"
)

// Type returns the event type as payloads name it, e.g. "document.changed".
func (k Kind) Type() string { return "document." + string(k) }

// Event is one row of an outbox: a change event and the state of its
// delivery.
type Event struct {
	// ID identifies the event; it increases with every event a store
	// writes and is never reused. Receivers deduplicate by it.
	ID int64
	// DocID is the document the event is about.
	DocID wire.DocID
	// Kind is what happened.
	Kind Kind
	// CreatedAt is when the event occurred (for Changed: the first append
	// of its window).
	CreatedAt time.Time
	// DueAt is when the event may be sent first (after the debounce).
	DueAt time.Time
	// Attempts counts the delivery attempts finished, failed or not.
	Attempts int
	// NextAttemptAt is when the event may be retried.
	NextAttemptAt time.Time
	// LastError says why the last failed attempt failed ("" if none did).
	LastError string
	// DeliveredAt is when every endpoint accepted the event; zero while it
	// is not delivered.
	DeliveredAt time.Time
	// Failed reports that the sender gave up on the event after its last
	// attempt. Failed events are kept, for the delivery log.
	Failed bool
}

// Status returns the event's delivery status: StatusDelivered,
// StatusFailed or StatusPending.
func (e Event) Status() Status {
	switch {
	case !e.DeliveredAt.IsZero():
		return StatusDelivered
	case e.Failed:
		return StatusFailed
	default:
		return StatusPending
	}
}

// Status is a delivery status, for filtering the delivery log.
type Status string

// The delivery statuses.
const (
	// StatusPending: not delivered yet, and still being tried.
	StatusPending Status = "pending"
	// StatusDelivered: every endpoint accepted the event.
	StatusDelivered Status = "delivered"
	// StatusFailed: the sender gave up after its last attempt.
	StatusFailed Status = "failed"
	// StatusAll selects every event.
	StatusAll Status = "all"
)

// ParseStatus parses a status filter; "" means StatusAll.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case "":
		return StatusAll, nil
	case StatusPending, StatusDelivered, StatusFailed, StatusAll:
		return st, nil
	default:
		return "", fmt.Errorf("webhook: unknown delivery status %q (want pending, delivered, failed or all)", s)
	}
}

// Filter selects events of the delivery log.
type Filter struct {
	// Status selects events by delivery status; "" means StatusAll.
	Status Status
	// DocID, if not empty, selects the events of one document.
	DocID wire.DocID
}

// Outbox is where a store keeps the change events it wrote in the same
// transactions as the changes, for a Sender to deliver. The document
// stores in docstore implement it (when opened with their outbox option).
// Times are stored with millisecond precision at least.
type Outbox interface {
	// DueEvents returns up to limit events that are not delivered, not
	// failed, whose due time and next attempt time are not after now, in
	// ID order.
	DueEvents(ctx context.Context, now time.Time, limit int) ([]Event, error)
	// MarkDelivered records that the event was delivered at at, counting
	// the attempt. Marking an event that is delivered already, or gone,
	// does nothing.
	MarkDelivered(ctx context.Context, id int64, at time.Time) error
	// MarkFailed records that delivery attempt number attempt (from 1)
	// failed with lastErr, and that the event may be retried at
	// nextAttempt; gaveUp marks it failed for good. Marking an event that
	// is delivered already, or gone, does nothing.
	MarkFailed(ctx context.Context, id int64, attempt int, nextAttempt time.Time, lastErr string, gaveUp bool) error
	// ListDeliveries returns up to limit events (1 to 1000, the API's page
	// limit; other values mean 1000) with IDs above after that match filter, in
	// ID order: the delivery log, paginated by the last ID of a page.
	ListDeliveries(ctx context.Context, filter Filter, after int64, limit int) ([]Event, error)
	// PruneDeliveries deletes the events delivered before before and
	// returns how many it deleted. Pending and failed events stay.
	PruneDeliveries(ctx context.Context, before time.Time) (int64, error)
}
