package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// delivery is one webhook event in the delivery log.
type delivery struct {
	ID            int64      `json:"id"`
	Type          string     `json:"type"`
	DocumentID    wire.DocID `json:"document_id"`
	Status        string     `json:"status"`
	CreatedAt     time.Time  `json:"created_at"`
	DueAt         time.Time  `json:"due_at"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

func (s *Server) mountWebhooks(r chi.Router) {
	r.Get("/webhooks/deliveries", s.listDeliveries)
}

// listDeliveries pages through the webhook delivery log: every event, its
// attempts, and whether it was delivered or given up on (failed events are
// kept, not dropped).
func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Outbox == nil {
		s.writeError(w, r, errorf(http.StatusNotFound, "webhooks_disabled", "no webhook endpoints are configured"))
		return
	}
	q := r.URL.Query()
	status, err := webhook.ParseStatus(q.Get("status"))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, "invalid_status", err.Error()))
		return
	}
	filter := webhook.Filter{Status: status}
	if v := q.Get("document_id"); v != "" {
		id, err := wire.ParseDocID(v)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		filter.DocID = id
	}
	var after int64
	limit, err := pageQuery(r, func(c string) error {
		n, err := nonNegative(c)
		after = int64(n)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	events, err := s.cfg.Outbox.ListDeliveries(r.Context(), filter, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := struct {
		Deliveries []delivery `json:"deliveries"`
		NextCursor string     `json:"next_cursor,omitempty"`
	}{Deliveries: []delivery{}}
	for i, ev := range events {
		if i == limit {
			resp.NextCursor = strconv.FormatInt(events[i-1].ID, 10)
			break
		}
		d := delivery{ID: ev.ID, Type: ev.Kind.Type(), DocumentID: ev.DocID, Status: string(ev.Status()),
			CreatedAt: ev.CreatedAt.UTC(), DueAt: ev.DueAt.UTC(), Attempts: ev.Attempts, LastError: ev.LastError}
		if !ev.NextAttemptAt.IsZero() && ev.Status() == webhook.StatusPending {
			t := ev.NextAttemptAt.UTC()
			d.NextAttemptAt = &t
		}
		if !ev.DeliveredAt.IsZero() {
			t := ev.DeliveredAt.UTC()
			d.DeliveredAt = &t
		}
		resp.Deliveries = append(resp.Deliveries, d)
	}
	writeJSON(w, http.StatusOK, resp)
}
