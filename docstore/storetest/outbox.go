package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// OutboxStore is a store with an outbox.
type OutboxStore interface {
	room.Store
	webhook.Outbox
}

// OutboxHarness tells RunOutbox how to make stores.
type OutboxHarness struct {
	// Open returns a new store holding no documents, with its outbox
	// enabled with debounce and its clock set to now. RunOutbox closes it.
	Open func(t *testing.T, debounce time.Duration, now func() time.Time) OutboxStore
	// OpenDisabled returns a new store holding no documents, with its
	// outbox disabled. RunOutbox closes it.
	OpenDisabled func(t *testing.T) OutboxStore
}

// Clock is a fake clock for stores' clock options. It starts at a whole
// millisecond, and every store keeps milliseconds at least.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at start truncated to the millisecond.
func NewClock(start time.Time) *Clock { return &Clock{now: start.Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// testDebounce is the debounce the suite opens its stores with.
const testDebounce = 10 * time.Second

// RunOutbox runs the outbox conformance suite against the stores h makes.
func RunOutbox(t *testing.T, h OutboxHarness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s OutboxStore, c *Clock)
	}{
		{"CreatedAndChanged", testOutboxCreated},
		{"Debounce", testOutboxDebounce},
		{"CoalesceIntoRetry", testOutboxCoalesceIntoRetry},
		{"Delete", testOutboxDelete},
		{"DueAndMark", testOutboxDueAndMark},
		{"ListDeliveries", testOutboxList},
		{"ConcurrentAppends", testOutboxConcurrent},
		{"Prune", testOutboxPrune},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
			s := h.Open(t, testDebounce, c.Now)
			t.Cleanup(func() { closeStore(t, s) })
			tc.fn(t, s, c)
		})
	}
	t.Run("Disabled", func(t *testing.T) {
		s := h.OpenDisabled(t)
		t.Cleanup(func() { closeStore(t, s) })
		id := wire.NewDocID()
		appendOK(t, s, id, NewChanges(2, 10))
		appendOK(t, s, id, NewChanges(1, 10))
		if err := s.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if evs := list(t, s, webhook.Filter{}); len(evs) != 0 {
			t.Fatalf("a store without the outbox wrote events: %s", kinds(evs))
		}
	})
}

// list returns every event of the delivery log matching f.
func list(t *testing.T, s webhook.Outbox, f webhook.Filter) []webhook.Event {
	t.Helper()
	var out []webhook.Event
	var after int64
	for {
		page, err := s.ListDeliveries(context.Background(), f, after, 2)
		if err != nil {
			t.Fatalf("ListDeliveries(%+v, after %d): %v", f, after, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
}

func docEvents(t *testing.T, s webhook.Outbox, id wire.DocID) []webhook.Event {
	t.Helper()
	return list(t, s, webhook.Filter{DocID: id})
}

func due(t *testing.T, s webhook.Outbox, now time.Time) []webhook.Event {
	t.Helper()
	evs, err := s.DueEvents(context.Background(), now, 100)
	if err != nil {
		t.Fatalf("DueEvents: %v", err)
	}
	return evs
}

// kinds describes events as "created#1 changed#2".
func kinds(evs []webhook.Event) string {
	var s string
	for i, ev := range evs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%s#%d", ev.Kind, ev.ID)
	}
	return "[" + s + "]"
}

func wantKinds(t *testing.T, evs []webhook.Event, want ...webhook.Kind) {
	t.Helper()
	ok := len(evs) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = evs[i].Kind == want[i] && (i == 0 || evs[i].ID > evs[i-1].ID)
	}
	if !ok {
		t.Fatalf("events %s, want kinds %v in ID order", kinds(evs), want)
	}
}

func markDelivered(t *testing.T, s webhook.Outbox, at time.Time, evs ...webhook.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := s.MarkDelivered(context.Background(), ev.ID, at); err != nil {
			t.Fatalf("MarkDelivered(%d): %v", ev.ID, err)
		}
	}
}

func testOutboxCreated(t *testing.T, s OutboxStore, c *Clock) {
	t0 := c.Now()
	id, other := wire.NewDocID(), wire.NewDocID()
	appendOK(t, s, id, NewChanges(3, 10))
	evs := docEvents(t, s, id)
	wantKinds(t, evs, webhook.Created, webhook.Changed)
	for _, ev := range evs {
		if ev.DocID != id || !ev.CreatedAt.Equal(t0) || !ev.NextAttemptAt.Equal(t0) || ev.Attempts != 0 ||
			ev.LastError != "" || !ev.DeliveredAt.IsZero() || ev.Failed || ev.Status() != webhook.StatusPending {
			t.Errorf("new event %+v: want doc %s, created and next attempt at %v, no attempts, pending", ev, id, t0)
		}
	}
	if !evs[0].DueAt.Equal(t0) || !evs[1].DueAt.Equal(t0.Add(testDebounce)) {
		t.Errorf("due at %v and %v; want created due at once (%v), changed after the debounce", evs[0].DueAt, evs[1].DueAt, t0)
	}
	// The document exists now: appending to it creates nothing more, and
	// another document's events are its own.
	appendOK(t, s, id, NewChanges(1, 10))
	appendOK(t, s, other, NewChanges(1, 10))
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed)
	wantKinds(t, docEvents(t, s, other), webhook.Created, webhook.Changed)
}

func testOutboxDebounce(t *testing.T, s OutboxStore, c *Clock) {
	id := wire.NewDocID()
	appendOK(t, s, id, NewChanges(1, 10))
	created := docEvents(t, s, id)[0]
	markDelivered(t, s, c.Now(), created)
	for range 10 {
		c.Advance(100 * time.Millisecond)
		appendOK(t, s, id, NewChanges(1, 10))
	}
	evs := docEvents(t, s, id)
	wantKinds(t, evs, webhook.Created, webhook.Changed)
	first := evs[1]

	// Appends that only repeat logged changes are no change.
	markDelivered(t, s, c.Now(), first)
	doc := load(t, s, id)
	appendOK(t, s, id, []core.Change{{Hash: hashOf(doc.Changes[0]), Data: doc.Changes[0]}})
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed)

	// After a delivery, the next append makes a new event.
	appendOK(t, s, id, NewChanges(1, 10))
	evs = docEvents(t, s, id)
	wantKinds(t, evs, webhook.Created, webhook.Changed, webhook.Changed)
	second := evs[2]
	if !second.DueAt.Equal(c.Now().Add(testDebounce)) {
		t.Errorf("second changed event due at %v, want %v", second.DueAt, c.Now().Add(testDebounce))
	}
	// A busy document gets an event at least every debounce: once the
	// pending event is (nearly) due, a Sender may be reading the heads for
	// it, and the next append makes another one.
	c.Advance(testDebounce)
	appendOK(t, s, id, NewChanges(1, 10))
	appendOK(t, s, id, NewChanges(1, 10))
	evs = docEvents(t, s, id)
	wantKinds(t, evs, webhook.Created, webhook.Changed, webhook.Changed, webhook.Changed)
	if got := due(t, s, c.Now()); len(got) != 1 || got[0].ID != second.ID {
		t.Errorf("due now: %s, want only #%d", kinds(got), second.ID)
	}
}

func testOutboxCoalesceIntoRetry(t *testing.T, s OutboxStore, c *Clock) {
	id := wire.NewDocID()
	appendOK(t, s, id, NewChanges(1, 10))
	evs := docEvents(t, s, id)
	markDelivered(t, s, c.Now(), evs[0])
	now := c.Advance(testDebounce)
	if got := due(t, s, now); len(got) != 1 || got[0].ID != evs[1].ID {
		t.Fatalf("due: %s, want #%d", kinds(got), evs[1].ID)
	}
	// The attempt fails; appends while the event waits for its retry
	// coalesce into it, as its payload is made at the retry.
	if err := s.MarkFailed(context.Background(), evs[1].ID, 1, now.Add(time.Minute), "boom", false); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	appendOK(t, s, id, NewChanges(1, 10))
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed)
	// Once the retry is near, a new append makes a new event.
	c.Advance(time.Minute)
	appendOK(t, s, id, NewChanges(1, 10))
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed, webhook.Changed)
}

func testOutboxDelete(t *testing.T, s OutboxStore, c *Clock) {
	ctx := context.Background()
	id := wire.NewDocID()
	appendOK(t, s, id, NewChanges(1, 10))
	evs := docEvents(t, s, id)
	markDelivered(t, s, c.Now(), evs[1]) // a delivered changed event stays
	appendOK(t, s, id, NewChanges(1, 10))
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed, webhook.Changed)
	t1 := c.Advance(time.Second)
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The pending changed event went; the deleted event is due at once.
	evs = docEvents(t, s, id)
	wantKinds(t, evs, webhook.Created, webhook.Changed, webhook.Deleted)
	if evs[1].Status() != webhook.StatusDelivered {
		t.Errorf("the delivered changed event is %s", evs[1].Status())
	}
	if d := evs[2]; !d.CreatedAt.Equal(t1) || !d.DueAt.Equal(t1) {
		t.Errorf("deleted event %+v: want created and due at %v", d, t1)
	}
	if got := due(t, s, t1); len(got) != 2 || got[0].ID != evs[0].ID || got[1].ID != evs[2].ID {
		t.Errorf("due after Delete: %s, want #%d, #%d", kinds(got), evs[0].ID, evs[2].ID)
	}
	// Deleting what is not stored is no event.
	if err := s.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, wire.NewDocID()); err != nil {
		t.Fatal(err)
	}
	if all := list(t, s, webhook.Filter{}); len(all) != 3 {
		t.Errorf("events after deleting missing documents: %s, want the 3 above", kinds(all))
	}
	// Creating it again is a new document.
	appendOK(t, s, id, NewChanges(1, 10))
	wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed, webhook.Deleted, webhook.Created, webhook.Changed)
}

func testOutboxDueAndMark(t *testing.T, s OutboxStore, c *Clock) {
	ctx := context.Background()
	t0 := c.Now()
	a, b := wire.NewDocID(), wire.NewDocID()
	appendOK(t, s, a, NewChanges(1, 10))
	appendOK(t, s, b, NewChanges(1, 10))
	evs := list(t, s, webhook.Filter{})
	wantKinds(t, evs, webhook.Created, webhook.Changed, webhook.Created, webhook.Changed)
	ca, cb := evs[1], evs[3]

	if got := due(t, s, t0.Add(-time.Millisecond)); len(got) != 0 {
		t.Errorf("due before anything happened: %s", kinds(got))
	}
	if got := due(t, s, t0); len(got) != 2 || got[0].ID != evs[0].ID || got[1].ID != evs[2].ID {
		t.Errorf("due at once: %s, want the created events", kinds(got))
	}
	if got, err := s.DueEvents(ctx, t0, 1); err != nil || len(got) != 1 || got[0].ID != evs[0].ID {
		t.Errorf("DueEvents(limit 1) = %s, %v; want the first", kinds(got), err)
	}
	markDelivered(t, s, t0.Add(time.Millisecond), evs[0], evs[2])
	now := t0.Add(testDebounce - time.Millisecond)
	if got := due(t, s, now); len(got) != 0 {
		t.Errorf("due before the debounce: %s", kinds(got))
	}
	now = t0.Add(testDebounce)
	if got := due(t, s, now); len(got) != 2 || got[0].ID != ca.ID || got[1].ID != cb.ID {
		t.Fatalf("due after the debounce: %s, want #%d #%d", kinds(got), ca.ID, cb.ID)
	}

	// A failed attempt waits for its retry time; the attempt is recorded.
	retry := now.Add(3 * time.Second)
	if err := s.MarkFailed(ctx, ca.ID, 1, retry, "status 500", false); err != nil {
		t.Fatal(err)
	}
	if got := due(t, s, retry.Add(-time.Millisecond)); len(got) != 1 || got[0].ID != cb.ID {
		t.Errorf("due before the retry: %s, want only #%d", kinds(got), cb.ID)
	}
	got := due(t, s, retry)
	if len(got) != 2 || got[0].ID != ca.ID {
		t.Fatalf("due at the retry: %s", kinds(got))
	}
	if e := got[0]; e.Attempts != 1 || !e.NextAttemptAt.Equal(retry) || e.LastError != "status 500" || e.Failed {
		t.Errorf("after a failed attempt: %+v", e)
	}
	// Giving up: never due again, kept as failed.
	if err := s.MarkFailed(ctx, ca.ID, 2, retry.Add(time.Hour), "status 502", true); err != nil {
		t.Fatal(err)
	}
	if got := due(t, s, retry.Add(24*time.Hour)); len(got) != 1 || got[0].ID != cb.ID {
		t.Errorf("due after giving up on #%d: %s", ca.ID, kinds(got))
	}
	failed := list(t, s, webhook.Filter{Status: webhook.StatusFailed})
	if len(failed) != 1 || failed[0].ID != ca.ID || !failed[0].Failed || failed[0].Attempts != 2 ||
		failed[0].LastError != "status 502" || failed[0].Status() != webhook.StatusFailed {
		t.Errorf("failed events: %+v", failed)
	}

	// Delivered: counts the attempt, records the time, never due again;
	// marking it again changes nothing, nor does marking a missing event.
	at := retry.Add(time.Second)
	if err := s.MarkFailed(ctx, cb.ID, 1, retry, "timeout", false); err != nil {
		t.Fatal(err)
	}
	markDelivered(t, s, at, got[1])
	markDelivered(t, s, at.Add(time.Hour), got[1])
	if err := s.MarkFailed(ctx, cb.ID, 5, at, "late", true); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, 1<<40, at); err != nil {
		t.Errorf("MarkDelivered(missing) = %v", err)
	}
	if err := s.MarkFailed(ctx, 1<<40, 1, at, "x", false); err != nil {
		t.Errorf("MarkFailed(missing) = %v", err)
	}
	del := list(t, s, webhook.Filter{Status: webhook.StatusDelivered, DocID: b})
	if len(del) != 2 || del[1].ID != cb.ID {
		t.Fatalf("delivered events of b: %s", kinds(del))
	}
	if e := del[1]; !e.DeliveredAt.Equal(at) || e.Attempts != 2 || e.Failed || e.LastError != "timeout" {
		t.Errorf("delivered event: %+v; want delivered at %v after 2 attempts", e, at)
	}
	if got := due(t, s, at.Add(24*time.Hour)); len(got) != 0 {
		t.Errorf("due when all are delivered or failed: %s", kinds(got))
	}
}

func testOutboxList(t *testing.T, s OutboxStore, c *Clock) {
	ctx := context.Background()
	var ids []wire.DocID
	for range 3 {
		id := wire.NewDocID()
		ids = append(ids, id)
		appendOK(t, s, id, NewChanges(1, 10))
		c.Advance(time.Millisecond)
	}
	all := list(t, s, webhook.Filter{Status: webhook.StatusAll})
	wantKinds(t, all, webhook.Created, webhook.Changed, webhook.Created, webhook.Changed, webhook.Created, webhook.Changed)
	markDelivered(t, s, c.Now(), all[0], all[2])
	if err := s.MarkFailed(ctx, all[1].ID, 10, c.Now(), "gone", true); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    webhook.Filter
		want []int
	}{
		{webhook.Filter{}, []int{0, 1, 2, 3, 4, 5}},
		{webhook.Filter{Status: webhook.StatusPending}, []int{3, 4, 5}},
		{webhook.Filter{Status: webhook.StatusDelivered}, []int{0, 2}},
		{webhook.Filter{Status: webhook.StatusFailed}, []int{1}},
		{webhook.Filter{DocID: ids[1]}, []int{2, 3}},
		{webhook.Filter{Status: webhook.StatusPending, DocID: ids[1]}, []int{3}},
		{webhook.Filter{DocID: wire.NewDocID()}, nil},
	} {
		got := list(t, s, tc.f)
		var want []int64
		for _, i := range tc.want {
			want = append(want, all[i].ID)
		}
		var have []int64
		for _, ev := range got {
			have = append(have, ev.ID)
		}
		if fmt.Sprint(have) != fmt.Sprint(want) {
			t.Errorf("ListDeliveries(%+v) = %v, want %v", tc.f, have, want)
		}
	}
	// Pages: after a cursor, up to the limit; out-of-range limits mean the
	// maximum.
	page, err := s.ListDeliveries(ctx, webhook.Filter{}, all[1].ID, 3)
	if err != nil || len(page) != 3 || page[0].ID != all[2].ID || page[2].ID != all[4].ID {
		t.Errorf("page after #%d, limit 3 = %s, %v", all[1].ID, kinds(page), err)
	}
	for _, limit := range []int{0, -1, paging.MaxLimit + 1} {
		if page, err := s.ListDeliveries(ctx, webhook.Filter{}, 0, limit); err != nil || len(page) != 6 {
			t.Errorf("ListDeliveries(limit %d) = %d events, %v", limit, len(page), err)
		}
	}
	if _, err := s.ListDeliveries(ctx, webhook.Filter{Status: "bogus"}, 0, 10); err == nil {
		t.Error("ListDeliveries(status bogus) succeeded")
	}
}

func testOutboxConcurrent(t *testing.T, s OutboxStore, c *Clock) {
	// Appends from many rooms at once, as group commit batches them, and
	// several Appends to each: every document gets one created and one
	// changed event, in that order.
	const docs, rounds = 40, 3
	ids := make([]wire.DocID, docs)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = wire.NewDocID()
		wg.Go(func() {
			for range rounds {
				if _, err := s.Append(context.Background(), ids[i], NewChanges(2, 50)); err != nil {
					t.Errorf("Append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		wantKinds(t, docEvents(t, s, id), webhook.Created, webhook.Changed)
	}
}

// testOutboxPrune checks that PruneDeliveries deletes exactly the events
// delivered before its cutoff, and keeps pending and failed ones.
func testOutboxPrune(t *testing.T, s OutboxStore, c *Clock) {
	ctx := context.Background()
	old, recent, pending, failed := wire.NewDocID(), wire.NewDocID(), wire.NewDocID(), wire.NewDocID()
	for _, id := range []wire.DocID{old, recent, pending, failed} {
		appendOK(t, s, id, NewChanges(1, 10))
	}
	markDelivered(t, s, c.Now(), docEvents(t, s, old)...)
	for _, ev := range docEvents(t, s, failed) {
		if err := s.MarkFailed(ctx, ev.ID, 1, c.Now(), "refused", true); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := c.Advance(time.Hour)
	markDelivered(t, s, c.Advance(time.Minute), docEvents(t, s, recent)...)
	n, err := s.PruneDeliveries(ctx, cutoff)
	if err != nil {
		t.Fatalf("PruneDeliveries: %v", err)
	}
	if n != 2 {
		t.Errorf("PruneDeliveries deleted %d events, want the 2 delivered before the cutoff", n)
	}
	if evs := docEvents(t, s, old); len(evs) != 0 {
		t.Errorf("events delivered before the cutoff are still there: %+v", evs)
	}
	wantKinds(t, docEvents(t, s, recent), webhook.Created, webhook.Changed)
	wantKinds(t, docEvents(t, s, pending), webhook.Created, webhook.Changed)
	wantKinds(t, docEvents(t, s, failed), webhook.Created, webhook.Changed)
	if n, err := s.PruneDeliveries(ctx, cutoff); err != nil || n != 0 {
		t.Errorf("second PruneDeliveries = %d, %v; want 0, nil", n, err)
	}
}
