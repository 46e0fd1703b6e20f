package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-sync/tandem/docstore/postgres"
	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of http.DefaultTransport.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"))
}

// store is a document store with its outbox on.
type store interface {
	room.Store
	webhook.Outbox
}

// testDebounce is the stores' debounce.
const testDebounce = 20 * time.Millisecond

// eachStore runs fn, in parallel, against a new SQLite store and a new
// Postgres store (in a fresh database), both with the outbox on.
func eachStore(t *testing.T, fn func(t *testing.T, s store)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		s, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.WithOutbox(testDebounce))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		s, err := postgres.Open(context.Background(), storetest.NewPostgresDatabase(t),
			postgres.WithOutbox(testDebounce))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

// docs writes documents as rooms do, and serves their heads as rooms would
// (what the lead's Config.Heads does): a room applies changes in memory,
// so its heads include them, before it appends them to the store. Here a
// document's "heads" are the number of changes made to it.
type docs struct {
	t *testing.T
	s store

	mu      sync.Mutex
	changes map[wire.DocID]int
}

func newDocs(t *testing.T, s store) *docs {
	return &docs{t: t, s: s, changes: make(map[wire.DocID]int)}
}

func (d *docs) append(id wire.DocID, n int) {
	d.mu.Lock()
	d.changes[id] += n
	d.mu.Unlock()
	if _, err := d.s.Append(context.Background(), id, storetest.NewChanges(n, 20)); err != nil {
		d.t.Errorf("Append: %v", err)
	}
}

func (d *docs) delete(id wire.DocID) {
	d.mu.Lock()
	delete(d.changes, id)
	d.mu.Unlock()
	if err := d.s.Delete(context.Background(), id); err != nil {
		d.t.Errorf("Delete: %v", err)
	}
}

// heads is the Config.Heads function.
func (d *docs) heads(_ context.Context, id wire.DocID) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n, ok := d.changes[id]
	if !ok {
		return nil, fmt.Errorf("heads of %s: %w", id, room.ErrNotFound)
	}
	return []string{headsAfter(n)}, nil
}

func headsAfter(changes int) string { return "after-" + strconv.Itoa(changes) }

// hit is one request a receiver took.
type hit struct {
	p      webhook.Payload
	at     time.Time
	status int
}

// receiver is a webhook endpoint that checks every request as a receiver
// should (signature, headers, payload) and records it.
type receiver struct {
	t      *testing.T
	secret []byte
	srv    *httptest.Server
	// respond returns the status for the nth request (from 1) for p.ID;
	// nil: 200.
	respond func(ctx context.Context, p webhook.Payload, n int) int

	mu   sync.Mutex
	hits []hit
	n    map[int64]int
}

func newReceiver(t *testing.T, secret []byte, respond func(ctx context.Context, p webhook.Payload, n int) int) *receiver {
	r := &receiver{t: t, secret: secret, respond: respond, n: make(map[int64]int)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return // the sender gave up on the request
	}
	h := req.Header
	if err := webhook.Verify(r.secret, h.Get(webhook.HeaderSignature), h.Get(webhook.HeaderTimestamp), body,
		time.Minute, time.Now()); err != nil {
		r.t.Errorf("receiver: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		r.t.Errorf("receiver: payload %s: %v", body, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if req.Method != http.MethodPost || h.Get("Content-Type") != "application/json" ||
		h.Get(webhook.HeaderEventID) != strconv.FormatInt(p.ID, 10) {
		r.t.Errorf("receiver: %s with Content-Type %q, event ID header %q, payload ID %d",
			req.Method, h.Get("Content-Type"), h.Get(webhook.HeaderEventID), p.ID)
	}
	r.mu.Lock()
	r.n[p.ID]++
	n := r.n[p.ID]
	r.mu.Unlock()
	status := http.StatusOK
	if r.respond != nil {
		status = r.respond(req.Context(), p, n)
	}
	r.mu.Lock()
	r.hits = append(r.hits, hit{p: p, at: time.Now(), status: status})
	r.mu.Unlock()
	w.WriteHeader(status)
}

// accepted returns, for every event ID the receiver answered 2xx, the
// payloads it accepted.
func (r *receiver) accepted() map[int64][]webhook.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int64][]webhook.Payload)
	for _, h := range r.hits {
		if h.status/100 == 2 {
			out[h.p.ID] = append(out[h.p.ID], h.p)
		}
	}
	return out
}

// hitsFor returns the requests for event id, in arrival order.
func (r *receiver) hitsFor(id int64) []hit {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hit
	for _, h := range r.hits {
		if h.p.ID == id {
			out = append(out, h)
		}
	}
	return out
}

// run starts s.Run and returns a function that stops it and waits for Run
// to return (also called when t ends).
func run(t *testing.T, s *webhook.Sender) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10s of its context's end")
		}
	}
	t.Cleanup(stop)
	return stop
}

// events returns the outbox's events with status st.
func events(t *testing.T, s webhook.Outbox, st webhook.Status) []webhook.Event {
	t.Helper()
	var out []webhook.Event
	var after int64
	for {
		page, err := s.ListDeliveries(context.Background(), webhook.Filter{Status: st}, after, 0)
		if err != nil {
			t.Fatalf("ListDeliveries(%s): %v", st, err)
		}
		if len(page) == 0 {
			return out
		}
		out = append(out, page...)
		after = page[len(page)-1].ID
	}
}
