package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

func newServer(t *testing.T, cfg api.Config) (*httptest.Server, *hub.Hub, *api.Server) {
	t.Helper()
	st, err := docstore.OpenSQLite(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	rooms := room.NewRegistry(st, room.Config{})
	h := hub.New(rooms, hub.Config{StorageID: "storage"})
	srv := api.NewServer(h, rooms, cfg)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		h.Close()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = rooms.Close(ctx)
		st.Close()
	})
	return ts, h, srv
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHTTPEndpoints(t *testing.T) {
	t.Parallel()
	ts, _, srv := newServer(t, api.Config{Version: "v-test"})
	if code, body := get(t, ts.URL+"/"); code != 200 || !strings.Contains(body, "Tandem v-test is running") || !strings.Contains(body, "WebSocketClientAdapter") {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := get(t, ts.URL+"/readyz"); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	if code, _ := get(t, ts.URL+"/no/such/page"); code != 404 {
		t.Fatalf("unknown path %d, want 404", code)
	}
	srv.SetDraining()
	if code, body := get(t, ts.URL+"/readyz"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("readyz while draining = %d %q", code, body)
	}
}

func TestWebSocketOnAnyPathAndDeadPeers(t *testing.T) {
	t.Parallel()
	ts, h, _ := newServer(t, api.Config{PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/any/path/at/all"
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	join, err := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "peer-quiet"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageBinary, join); err != nil {
		t.Fatal(err)
	}
	_, frame, err := c.Read(ctx) // reading answers pings while it runs
	if err != nil {
		t.Fatal(err)
	}
	if m, err := wire.Decode(frame); err != nil || m.Type != wire.TypePeer {
		t.Fatalf("handshake answer %+v, %v", m, err)
	}
	// Keep reading for several ping intervals: a live peer stays.
	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = c.Read(rctx)
	rcancel()
	if h.Len() != 1 {
		t.Fatalf("live peer dropped (read ended with %v)", err)
	}
	// Stop reading: pings go unanswered and the server drops the peer.
	deadline := time.Now().Add(5 * time.Second)
	for h.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a peer that stopped answering pings was not dropped")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
