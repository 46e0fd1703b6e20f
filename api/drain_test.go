package api_test

import (
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/sync/wire"
)

// TestDrainingClosesWithGoingAway: a connection that arrives while the
// server shuts down is accepted, told why and closed with 1001, not refused
// with HTTP 503 (which a stock Node client rethrows as an uncaught
// exception in the middle of a rolling restart).
func TestDrainingClosesWithGoingAway(t *testing.T) {
	t.Parallel()
	ts, _, srv := newServer(t, api.Config{})
	srv.SetDraining()
	got := dialRefused(t, "ws"+strings.TrimPrefix(ts.URL, "http"))
	if got.code != websocket.StatusCode(wire.CloseGoingAway) || got.msg.Type != wire.TypeError ||
		!strings.Contains(got.msg.ErrorMessage, "shutting down") {
		t.Fatalf("got %+v, want an error message then 1001", got)
	}
}
