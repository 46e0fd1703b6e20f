package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/docstore/sqlite"
)

func openSQLiteWithOutbox(t *testing.T) testStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.WithOutbox(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestDeliveryLog(t *testing.T) {
	t.Parallel()
	off := newEnv(t, openSQLite, api.Config{})
	off.do(t, "GET", "/api/v1/webhooks/deliveries", nil, "").wantError(t, http.StatusNotFound, "webhooks_disabled")

	st := openSQLiteWithOutbox(t)
	e := newEnv(t, func(*testing.T) testStore { return st }, api.Config{Outbox: st.(*sqlite.Store)})
	doc := e.create(t, `{"a": 1}`)

	type deliveries struct {
		Deliveries []struct {
			ID         int64  `json:"id"`
			Type       string `json:"type"`
			DocumentID string `json:"document_id"`
			Status     string `json:"status"`
			Attempts   int    `json:"attempts"`
		} `json:"deliveries"`
		NextCursor string `json:"next_cursor"`
	}
	var all deliveries
	e.do(t, "GET", "/api/v1/webhooks/deliveries", nil, "").want(t, http.StatusOK, &all)
	types := []string{}
	for _, d := range all.Deliveries {
		if d.DocumentID != string(doc.ID) || d.Status != "pending" || d.Attempts != 0 {
			t.Errorf("delivery %+v", d)
		}
		types = append(types, d.Type)
	}
	if strings.Join(types, ",") != "document.created,document.changed" {
		t.Fatalf("delivery log types %v, want created then changed", types)
	}

	var page deliveries
	e.do(t, "GET", "/api/v1/webhooks/deliveries?limit=1", nil, "").want(t, http.StatusOK, &page)
	if len(page.Deliveries) != 1 || page.NextCursor == "" {
		t.Fatalf("first page %+v, want one delivery and a cursor", page)
	}
	var rest deliveries
	e.do(t, "GET", "/api/v1/webhooks/deliveries?limit=1&cursor="+page.NextCursor, nil, "").want(t, http.StatusOK, &rest)
	if len(rest.Deliveries) != 1 || rest.Deliveries[0].ID == page.Deliveries[0].ID {
		t.Fatalf("second page %+v", rest)
	}
	var failed deliveries
	e.do(t, "GET", "/api/v1/webhooks/deliveries?status=failed", nil, "").want(t, http.StatusOK, &failed)
	if len(failed.Deliveries) != 0 {
		t.Fatalf("failed deliveries %+v, want none", failed)
	}
	e.do(t, "GET", "/api/v1/webhooks/deliveries?status=lost", nil, "").wantError(t, http.StatusBadRequest, "invalid_status")
	e.do(t, "GET", "/api/v1/webhooks/deliveries?limit=0", nil, "").wantError(t, http.StatusBadRequest, "invalid_limit")
	e.do(t, "GET", "/api/v1/webhooks/deliveries?document_id=nope!", nil, "").wantError(t, http.StatusBadRequest, "invalid_document_id")
}

func TestAllowedOrigins(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite, api.Config{Access: api.AccessConfig{AllowedOrigins: []string{"app.example.com"}}})
	url := "ws" + strings.TrimPrefix(e.ts.URL, "http")
	dial := func(origin string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		if err == nil {
			c.CloseNow()
		}
		return err
	}
	if err := dial("https://app.example.com"); err != nil {
		t.Fatalf("an allowed origin was refused: %v", err)
	}
	if err := dial("https://evil.example.net"); err == nil {
		t.Fatal("a foreign origin was accepted")
	}

	anyOrigin := newEnv(t, openSQLite, api.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(anyOrigin.ts.URL, "http"),
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://anywhere.example.org"}}})
	if err != nil {
		t.Fatalf("with no allowed origins configured, any origin must be accepted: %v", err)
	}
	c.CloseNow()
}
