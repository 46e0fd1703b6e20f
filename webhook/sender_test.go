package webhook_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

var secret = []byte("test secret")

// TestDeliversEveryEvent writes, changes and deletes documents before and
// while a Sender runs with two endpoints, and checks that every event
// reaches both, with the right payload, and that the last 'changed' event
// of every document carries its final heads.
func TestDeliversEveryEvent(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		a, b := newReceiver(t, secret, nil), newReceiver(t, secret, nil)
		ids := make([]wire.DocID, 12)
		for i := range ids {
			ids[i] = wire.NewDocID()
			d.append(ids[i], 1+i%3)
		}
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{a.url(), b.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond, Backoff: 10 * time.Millisecond,
		}))
		// Rooms at work meanwhile: bursts of appends to random documents.
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 40 {
					d.append(ids[rand.IntN(len(ids))], 1)
					if i%8 == w {
						time.Sleep(testDebounce)
					}
				}
			})
		}
		wg.Wait()
		deleted := map[wire.DocID]bool{ids[0]: true, ids[5]: true}
		for id := range deleted {
			d.delete(id)
		}
		testwait.For(t, 20*time.Second, "every event delivered", func() bool {
			return len(events(t, s, webhook.StatusPending)) == 0
		})

		all := events(t, s, webhook.StatusAll)
		lastChanged := make(map[wire.DocID]int64)
		for _, ev := range all {
			if ev.Status() != webhook.StatusDelivered || ev.Attempts < 1 {
				t.Errorf("event %d (%s): %s after %d attempts", ev.ID, ev.Kind, ev.Status(), ev.Attempts)
			}
			if ev.Kind == webhook.Changed {
				lastChanged[ev.DocID] = ev.ID
			}
			for name, r := range map[string]*receiver{"a": a, "b": b} {
				got := r.accepted()[ev.ID]
				if len(got) == 0 {
					t.Errorf("receiver %s never accepted event %d (%s of %s)", name, ev.ID, ev.Kind, ev.DocID)
				}
				for _, p := range got {
					checkPayload(t, ev, p, deleted[ev.DocID])
				}
			}
		}
		for _, id := range ids {
			if deleted[id] {
				continue
			}
			last, ok := lastChanged[id]
			if !ok {
				t.Errorf("document %s has no changed event", id)
				continue
			}
			want, _ := d.heads(context.Background(), id)
			for _, p := range a.accepted()[last] {
				if len(p.Heads) != 1 || p.Heads[0] != want[0] {
					t.Errorf("document %s: last changed event %d has heads %v, want its final heads %v", id, last, p.Heads, want)
				}
			}
		}
		for _, k := range []webhook.Kind{webhook.Created, webhook.Changed, webhook.Deleted} {
			n := 0
			for _, ev := range all {
				if ev.Kind == k {
					n++
				}
			}
			t.Logf("%d %s events", n, k)
		}
	})
}

func checkPayload(t *testing.T, ev webhook.Event, p webhook.Payload, deleted bool) {
	t.Helper()
	at, err := time.Parse(time.RFC3339, p.OccurredAt)
	if p.Type != "document."+string(ev.Kind) || p.DocumentID != string(ev.DocID) ||
		p.URL != "automerge:"+string(ev.DocID) || err != nil || !at.Equal(ev.CreatedAt.Truncate(time.Millisecond)) ||
		!strings.HasSuffix(p.OccurredAt, "Z") {
		t.Errorf("event %+v: payload %+v (occurred_at: %v)", ev, p, err)
	}
	switch {
	case ev.Kind == webhook.Deleted && p.Heads != nil:
		t.Errorf("deleted event %d has heads %v", ev.ID, p.Heads)
	case ev.Kind == webhook.Changed && len(p.Heads) == 0:
		t.Errorf("changed event %d has no heads", ev.ID)
	case ev.Kind == webhook.Created && len(p.Heads) == 0 && !deleted:
		t.Errorf("created event %d has no heads", ev.ID)
	}
}

// TestChangeDuringDelivery changes a document while its 'changed' event is
// being delivered, after its heads were read: that change must get an
// event of its own, so that the receiver learns the final heads.
func TestChangeDuringDelivery(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		id := wire.NewDocID()
		var once sync.Once
		r := newReceiver(t, secret, func(_ context.Context, p webhook.Payload, _ int) int {
			if p.Type == "document.changed" {
				once.Do(func() { d.append(id, 1) })
			}
			return http.StatusOK
		})
		d.append(id, 1)
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{r.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond,
		}))
		final := headsAfter(2)
		testwait.For(t, 10*time.Second, "an event with the final heads "+final, func() bool {
			for _, ps := range r.accepted() {
				for _, p := range ps {
					if p.Type == "document.changed" && len(p.Heads) == 1 && p.Heads[0] == final {
						return true
					}
				}
			}
			return false
		})
	})
}

// TestRetriesUntilAccepted: an endpoint that fails three times, then
// accepts, gets every event, after backoffs that double.
func TestRetriesUntilAccepted(t *testing.T) {
	t.Parallel()
	const backoff = 40 * time.Millisecond
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		r := newReceiver(t, secret, func(_ context.Context, _ webhook.Payload, n int) int {
			if n <= 3 {
				return http.StatusServiceUnavailable
			}
			return http.StatusNoContent
		})
		id := wire.NewDocID()
		d.append(id, 2)
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{r.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond, Backoff: backoff, MaxAttempts: 5,
		}))
		testwait.For(t, 20*time.Second, "both events delivered", func() bool {
			return len(events(t, s, webhook.StatusDelivered)) == 2
		})
		for _, ev := range events(t, s, webhook.StatusAll) {
			if ev.Attempts != 4 || ev.Failed || !strings.Contains(ev.LastError, "503") {
				t.Errorf("event %d: %d attempts, failed %v, last error %q; want 4 attempts, the last error a 503",
					ev.ID, ev.Attempts, ev.Failed, ev.LastError)
			}
			hits := r.hitsFor(ev.ID)
			if len(hits) != 4 || hits[3].status != http.StatusNoContent {
				t.Fatalf("event %d: %d requests, want 3 failures then 1 success", ev.ID, len(hits))
			}
			for i := 1; i < len(hits); i++ {
				gap := hits[i].at.Sub(hits[i-1].at)
				// Attempt i's backoff is drawn from [b/2, b], b = backoff << (i-1);
				// times are kept in milliseconds.
				if low := backoff<<(i-1)/2 - 2*time.Millisecond; gap < low {
					t.Errorf("event %d: retry %d came %v after the previous attempt, want at least %v", ev.ID, i, gap, low)
				}
			}
		}
	})
}

// TestGivesUp: an endpoint that always fails makes the events failed after
// MaxAttempts, kept in the outbox; an endpoint beside it that accepts gets
// every event once, not once per attempt.
func TestGivesUp(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		bad := newReceiver(t, secret, func(context.Context, webhook.Payload, int) int { return http.StatusInternalServerError })
		good := newReceiver(t, secret, nil)
		id := wire.NewDocID()
		d.append(id, 1)
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{good.url(), bad.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxAttempts: 3,
		}))
		testwait.For(t, 20*time.Second, "both events failed", func() bool {
			return len(events(t, s, webhook.StatusFailed)) == 2
		})
		time.Sleep(100 * time.Millisecond) // no further attempts
		failed := events(t, s, webhook.StatusFailed)
		for _, ev := range failed {
			if ev.Attempts != 3 || !ev.Failed || !ev.DeliveredAt.IsZero() || !strings.Contains(ev.LastError, "500") ||
				!strings.Contains(ev.LastError, bad.url()) {
				t.Errorf("failed event: %+v", ev)
			}
			if n := len(bad.hitsFor(ev.ID)); n != 3 {
				t.Errorf("event %d: the failing endpoint got %d requests, want 3", ev.ID, n)
			}
			if n := len(good.hitsFor(ev.ID)); n != 1 {
				t.Errorf("event %d: the accepting endpoint got %d requests, want 1", ev.ID, n)
			}
		}
		if n := len(events(t, s, webhook.StatusPending)); n != 0 {
			t.Errorf("%d events still pending", n)
		}
	})
}

// TestResumesAfterStop stops a Sender while a request is under way and
// starts a new one on the same store: it delivers the rest, the event in
// flight included; nothing is lost.
func TestResumesAfterStop(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		const n = 10
		for range n {
			d.append(wire.NewDocID(), 1)
		}
		hung := make(chan int64, 1)
		var requests sync.Map
		first := newReceiver(t, secret, func(ctx context.Context, p webhook.Payload, _ int) int {
			count := 0
			requests.Range(func(any, any) bool { count++; return true })
			requests.Store(p.ID, true)
			if count < 5 {
				return http.StatusOK
			}
			select {
			case hung <- p.ID:
			default:
			}
			// Hang until the sender gives up on the request; it does not
			// hear the answer.
			<-ctx.Done()
			return http.StatusServiceUnavailable
		})
		stop := run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{first.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond, Concurrency: 1,
		}))
		var inFlight int64
		select {
		case inFlight = <-hung:
		case <-time.After(20 * time.Second):
			t.Fatal("the sender never reached the hanging request")
		}
		stop()
		delivered := events(t, s, webhook.StatusDelivered)
		if len(delivered) == 0 || len(delivered) >= 2*n {
			t.Fatalf("%d of %d events delivered before the stop", len(delivered), 2*n)
		}
		for _, ev := range events(t, s, webhook.StatusAll) {
			if ev.ID == inFlight && (ev.Status() != webhook.StatusPending || ev.Attempts != 0) {
				t.Errorf("the event in flight at the stop: %s after %d attempts; want pending, no attempt counted",
					ev.Status(), ev.Attempts)
			}
		}

		second := newReceiver(t, secret, nil)
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{second.url()}, Secret: secret, Heads: d.heads,
			PollInterval: 5 * time.Millisecond,
		}))
		testwait.For(t, 20*time.Second, "the rest delivered", func() bool {
			return len(events(t, s, webhook.StatusDelivered)) == 2*n
		})
		got1, got2 := first.accepted(), second.accepted()
		for _, ev := range events(t, s, webhook.StatusAll) {
			if len(got1[ev.ID]) == 0 && len(got2[ev.ID]) == 0 {
				t.Errorf("event %d was never accepted", ev.ID)
			}
		}
		if len(got2[inFlight]) == 0 {
			t.Errorf("the event in flight at the stop (%d) did not reach the second sender's endpoint", inFlight)
		}
	})
}

// TestHeadsUnavailable: a changed event whose heads cannot be read is
// retried (and here fails); a created event goes without heads.
func TestHeadsUnavailable(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		r := newReceiver(t, secret, nil)
		id := wire.NewDocID()
		d := newDocs(t, s)
		d.append(id, 1)
		noHeads := func(context.Context, wire.DocID) ([]string, error) { return nil, context.DeadlineExceeded }
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{r.url()}, Secret: secret, Heads: noHeads,
			PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond, MaxAttempts: 2,
		}))
		testwait.For(t, 20*time.Second, "the events settled", func() bool {
			return len(events(t, s, webhook.StatusPending)) == 0
		})
		for _, ev := range events(t, s, webhook.StatusAll) {
			switch ev.Kind {
			case webhook.Created:
				if hits := r.hitsFor(ev.ID); ev.Status() != webhook.StatusDelivered || len(hits) != 1 || hits[0].p.Heads != nil {
					t.Errorf("created event: %s, %d requests; want delivered once, without heads", ev.Status(), len(hits))
				}
			case webhook.Changed:
				if ev.Status() != webhook.StatusFailed || ev.Attempts != 2 || !strings.Contains(ev.LastError, "heads") ||
					len(r.hitsFor(ev.ID)) != 0 {
					t.Errorf("changed event: %+v; want failed after 2 attempts for want of heads, never sent", ev)
				}
			}
		}
	})
}

func TestRunWithoutEndpoints(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	go func() {
		webhook.NewSender(webhook.Config{}).Run(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run without endpoints did not return")
	}
}

// TestPrunesDeliveredEvents: a Sender deletes the events delivered longer
// than its retention ago, and keeps the others.
func TestPrunesDeliveredEvents(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, s store) {
		d := newDocs(t, s)
		old, recent := wire.NewDocID(), wire.NewDocID()
		d.append(old, 1)
		d.append(recent, 1)
		mark := func(id wire.DocID, at time.Time) {
			for _, ev := range events(t, s, webhook.StatusAll) {
				if ev.DocID == id {
					if err := s.MarkDelivered(context.Background(), ev.ID, at); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		mark(old, time.Now().Add(-2*time.Hour))
		mark(recent, time.Now().Add(-30*time.Minute))
		run(t, webhook.NewSender(webhook.Config{
			Outbox: s, Endpoints: []string{newReceiver(t, secret, nil).url()}, Secret: secret, Heads: d.heads,
			Retention: time.Hour, PruneEvery: 10 * time.Millisecond,
		}))
		testwait.For(t, 10*time.Second, "the old document's events pruned", func() bool {
			return len(events(t, s, webhook.StatusAll)) == 2
		})
		for _, ev := range events(t, s, webhook.StatusAll) {
			if ev.DocID != recent {
				t.Errorf("event %+v is left, want only the recent document's", ev)
			}
		}
	})
}
