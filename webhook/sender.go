// Package webhook delivers document change events to HTTP endpoints, at
// least once. The events come from an Outbox: a table that the document
// store writes in the same transaction as the change each event describes
// (see docstore's WithOutbox options), so an event is never lost once its
// change is durable, nor sent for a change that was not. A Sender polls the
// outbox, POSTs each due event, signed with HMAC-SHA256 (see Sign and
// Verify), to every endpoint, and records the outcome in the outbox:
// delivered, or failed with a time to retry (exponential backoff), or, after
// Config.MaxAttempts, failed for good. Everything needed to resume is in the
// outbox: a restarted Sender carries on where the last one stopped.
//
// At least once means duplicates: a Sender stopped between an endpoint's
// 2xx and recording it sends the event again, and with several endpoints an
// event is retried until all of them accepted it (the Sender remembers,
// while it runs, which ones did, and skips them on retries; after a restart
// every endpoint gets it again). Receivers deduplicate by event ID.
// Events are sent in ID order, but a retried event may arrive after later
// ones.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// Defaults for the zero values of Config.
const (
	DefaultPollInterval = 200 * time.Millisecond
	DefaultMaxAttempts  = 10
	DefaultBackoff      = time.Second
	DefaultMaxBackoff   = 5 * time.Minute
	DefaultBatch        = 100
	DefaultConcurrency  = 4
	DefaultTimeout      = 10 * time.Second
	DefaultRetention    = 7 * 24 * time.Hour
	DefaultPruneEvery   = time.Hour
)

// timeFormat is RFC 3339 in UTC with milliseconds, as the HTTP API writes
// times.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// maxErrorLen bounds the last_error recorded for a failed attempt.
const maxErrorLen = 500

// markTimeout bounds recording an outcome after the Sender was stopped:
// an event that was delivered should not be sent again for want of a mark.
const markTimeout = 5 * time.Second

// Config configures a Sender. Every zero value has a usable default.
type Config struct {
	// Outbox is where the events come from and outcomes go. Required.
	Outbox Outbox
	// Endpoints are the URLs every event is POSTed to. An event is
	// delivered once all of them answered 2xx. None: Run returns at once.
	Endpoints []string
	// Secret is the HMAC-SHA256 key of the Tandem-Signature header. Empty
	// still signs, with an empty key, which proves nothing.
	Secret []byte
	// Heads returns a document's current heads (hex or bs58check change
	// hashes) for the payloads of created and changed events. nil: no
	// heads. An error fails a changed event's attempt (retried later); a
	// created event is sent without heads.
	Heads func(ctx context.Context, id wire.DocID) ([]string, error)
	// Client sends the requests. nil: a client with a DefaultTimeout
	// timeout that does not follow redirects (a 3xx is a failure).
	Client *http.Client
	// PollInterval is how often the outbox is polled when it had nothing
	// due (default DefaultPollInterval). A full batch is followed by
	// another poll at once.
	PollInterval time.Duration
	// MaxAttempts is how many attempts an event gets before it is marked
	// failed for good (default DefaultMaxAttempts). Failed events stay in
	// the outbox, for the delivery log.
	MaxAttempts int
	// Backoff is the delay before the first retry (default
	// DefaultBackoff); it doubles with every attempt up to MaxBackoff, and
	// each delay is drawn at random between half of it and all of it.
	Backoff time.Duration
	// MaxBackoff caps the delay between attempts (default
	// DefaultMaxBackoff).
	MaxBackoff time.Duration
	// Batch is how many due events one poll takes (default DefaultBatch).
	Batch int
	// Concurrency is how many documents' events are sent at once (default
	// DefaultConcurrency). One document's events of a batch are sent one
	// after another, in ID order.
	Concurrency int
	// Logger receives delivery failures and outbox errors. nil:
	// slog.Default().
	Logger *slog.Logger
	// Retention is how long delivered events are kept in the outbox, for
	// the delivery log, before the Sender prunes them (default
	// DefaultRetention). Pending and failed events are never pruned.
	Retention time.Duration
	// PruneEvery is how often delivered events past Retention are pruned
	// (default DefaultPruneEvery); the first prune runs when Run starts.
	PruneEvery time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Sender delivers an outbox's events to webhook endpoints. Create it with
// NewSender and run it with Run.
type Sender struct {
	cfg Config

	// accepted remembers, for the events not delivered yet, which
	// endpoints answered 2xx, so that retries skip them. (An event that a
	// Delete drops between two attempts leaves its entry behind: a few
	// bytes, until the Sender goes.)
	mu       sync.Mutex
	accepted map[int64]map[string]bool
}

// NewSender returns a Sender for cfg, with defaults for its zero values.
func NewSender(cfg Config) *Sender {
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout:       DefaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PruneEvery <= 0 {
		cfg.PruneEvery = DefaultPruneEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Endpoints = append([]string(nil), cfg.Endpoints...)
	return &Sender{cfg: cfg, accepted: make(map[int64]map[string]bool)}
}

// Run delivers due events until ctx ends. Stopping it in the middle of a
// delivery loses nothing: the event is still undelivered in the outbox and
// the next Sender sends it (again).
func (s *Sender) Run(ctx context.Context) {
	if len(s.cfg.Endpoints) == 0 {
		return
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	prune := time.NewTicker(s.cfg.PruneEvery)
	defer prune.Stop()
	s.prune(ctx)
	var failing bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-prune.C:
			s.prune(ctx)
			continue
		case <-timer.C:
		}
		n, err := s.poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && !failing:
			failing = true
			s.cfg.Logger.Error("webhook: cannot read the outbox; retrying", "err", err)
		case err == nil && failing:
			failing = false
			s.cfg.Logger.Info("webhook: reading the outbox again")
		}
		if err == nil && n == s.cfg.Batch {
			timer.Reset(0)
		} else {
			timer.Reset(s.cfg.PollInterval)
		}
	}
}

// prune deletes the events delivered more than Retention ago. A failure
// is logged and tried again at the next prune.
func (s *Sender) prune(ctx context.Context) {
	n, err := s.cfg.Outbox.PruneDeliveries(ctx, s.cfg.Now().Add(-s.cfg.Retention))
	switch {
	case err != nil && ctx.Err() == nil:
		s.cfg.Logger.Warn("webhook: cannot prune delivered events", "err", err)
	case n > 0:
		s.cfg.Logger.Debug("webhook: pruned delivered events", "events", n, "retention", s.cfg.Retention)
	}
}

// poll takes one batch of due events, delivers them, records the outcomes,
// and returns how many events it took.
func (s *Sender) poll(ctx context.Context) (int, error) {
	events, err := s.cfg.Outbox.DueEvents(ctx, s.cfg.Now(), s.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("webhook: due events: %w", err)
	}
	// One document's events go in order, by one goroutine; different
	// documents' in parallel.
	var order []wire.DocID
	byDoc := make(map[wire.DocID][]Event)
	for _, ev := range events {
		if _, ok := byDoc[ev.DocID]; !ok {
			order = append(order, ev.DocID)
		}
		byDoc[ev.DocID] = append(byDoc[ev.DocID], ev)
	}
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, id := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return len(events), nil
		}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, ev := range byDoc[id] {
				if ctx.Err() != nil {
					return
				}
				s.deliver(ctx, ev)
			}
		})
	}
	wg.Wait()
	return len(events), nil
}

// Payload is the JSON body of a webhook request.
type Payload struct {
	// ID is the event's ID, also in the Tandem-Event-Id header.
	ID int64 `json:"id"`
	// Type is "document.created", "document.changed" or
	// "document.deleted".
	Type string `json:"type"`
	// DocumentID is the document's ID.
	DocumentID string `json:"document_id"`
	// URL is the document's automerge: URL.
	URL string `json:"url"`
	// Heads are the document's heads when the event was sent: for changed
	// events always, for created events when available, never for deleted
	// ones (the field is left out when there are none to give).
	Heads []string `json:"heads,omitzero"`
	// OccurredAt is when the event occurred, RFC 3339 in UTC with
	// milliseconds (for changed events: the first append the event stands
	// for).
	OccurredAt string `json:"occurred_at"`
}

// deliver makes one delivery attempt of ev to the endpoints that have not
// accepted it yet, and records the outcome, unless ctx ended meanwhile
// without a definite outcome.
func (s *Sender) deliver(ctx context.Context, ev Event) {
	p := Payload{
		ID:         ev.ID,
		Type:       ev.Kind.Type(),
		DocumentID: string(ev.DocID),
		URL:        ev.DocID.URL(),
		OccurredAt: ev.CreatedAt.UTC().Format(timeFormat),
	}
	if ev.Kind != Deleted && s.cfg.Heads != nil {
		heads, err := s.cfg.Heads(ctx, ev.DocID)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil && ev.Kind == Changed:
			s.failed(ctx, ev, fmt.Errorf("heads of %s: %w", ev.DocID, err))
			return
		case err != nil:
			s.cfg.Logger.Debug("webhook: sending an event without heads", "event", ev.ID, "doc", ev.DocID, "err", err)
		default:
			p.Heads = append([]string{}, heads...) // [], not left out, for a document without heads
		}
	}
	body, err := json.Marshal(p)
	if err != nil {
		s.failed(ctx, ev, fmt.Errorf("encode payload: %w", err))
		return
	}
	ts := s.cfg.Now().Unix()
	sig := Sign(s.cfg.Secret, ts, body)

	s.mu.Lock()
	done := s.accepted[ev.ID]
	s.mu.Unlock()
	errs := make([]error, len(s.cfg.Endpoints))
	var wg sync.WaitGroup
	for i, url := range s.cfg.Endpoints {
		if done[url] {
			continue
		}
		wg.Go(func() { errs[i] = s.post(ctx, url, ev.ID, ts, sig, body) })
	}
	wg.Wait()

	s.mu.Lock()
	for i, url := range s.cfg.Endpoints {
		if errs[i] == nil && !done[url] {
			if s.accepted[ev.ID] == nil {
				s.accepted[ev.ID] = make(map[string]bool)
			}
			s.accepted[ev.ID][url] = true
		}
	}
	s.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		if ctx.Err() != nil {
			return // stopped, not failed: the next Sender tries again
		}
		s.failed(ctx, ev, err)
		return
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	if err := s.cfg.Outbox.MarkDelivered(mctx, ev.ID, s.cfg.Now()); err != nil {
		s.cfg.Logger.Error("webhook: cannot record a delivery; the event will be sent again",
			"event", ev.ID, "doc", ev.DocID, "err", err)
		return
	}
	s.forget(ev.ID)
}

// post sends one request and reports whether the endpoint accepted it.
func (s *Sender) post(ctx context.Context, url string, id, ts int64, sig string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Tandem-Webhook/1")
	req.Header.Set(HeaderEventID, strconv.FormatInt(id, 10))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := strings.TrimSpace(strings.ToValidUTF8(string(snippet), "?"))
		return fmt.Errorf("%s: status %s: %q", url, resp.Status, msg)
	}
	return nil
}

// failed records a failed attempt of ev: a retry after the backoff, or,
// after MaxAttempts attempts, failed for good.
func (s *Sender) failed(ctx context.Context, ev Event, cause error) {
	attempt := ev.Attempts + 1
	gaveUp := attempt >= s.cfg.MaxAttempts
	next := s.cfg.Now().Add(s.backoff(attempt))
	msg := cause.Error()
	if len(msg) > maxErrorLen {
		msg = strings.ToValidUTF8(msg[:maxErrorLen], "") + "…"
	}
	// One warning when an event starts failing, one error when it fails
	// for good: an endpoint that is down for a while does not flood the
	// log with every retry.
	log := s.cfg.Logger.Debug
	switch {
	case gaveUp:
		log = s.cfg.Logger.Error
	case attempt == 1:
		log = s.cfg.Logger.Warn
	}
	log("webhook: delivery failed", "event", ev.ID, "type", ev.Kind.Type(), "doc", ev.DocID,
		"attempt", attempt, "gave_up", gaveUp, "retry_at", next, "err", msg)
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	if err := s.cfg.Outbox.MarkFailed(mctx, ev.ID, attempt, next, msg, gaveUp); err != nil {
		s.cfg.Logger.Error("webhook: cannot record a failed delivery", "event", ev.ID, "doc", ev.DocID, "err", err)
		return
	}
	if gaveUp {
		s.forget(ev.ID)
	}
}

func (s *Sender) forget(id int64) {
	s.mu.Lock()
	delete(s.accepted, id)
	s.mu.Unlock()
}

// backoff returns the delay after attempt number attempt (from 1) failed:
// Backoff doubled attempt-1 times, at most MaxBackoff, drawn at random from
// its upper half so that many failed events do not retry in step.
func (s *Sender) backoff(attempt int) time.Duration {
	d := min(s.cfg.Backoff, s.cfg.MaxBackoff)
	for i := 1; i < attempt && d < s.cfg.MaxBackoff; i++ {
		if d > s.cfg.MaxBackoff/2 {
			d = s.cfg.MaxBackoff
			break
		}
		d *= 2
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d-d/2+1)
}
