package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tandem-sync/tandem/api/webhook"
	"github.com/tandem-sync/tandem/sync/wire"
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
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > webhook.MaxListLimit {
			s.writeError(w, r, errorf(http.StatusBadRequest, "invalid_limit", "limit must be 1 to 1000"))
			return
		}
	}
	var after int64
	if v := q.Get("cursor"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			s.writeError(w, r, errorf(http.StatusBadRequest, "invalid_cursor", "cursor is not a value from a previous page"))
			return
		}
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
