package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// newServer serves an API over a fresh SQLite store.
func newServer(t *testing.T, cfg api.Config) (*httptest.Server, *hub.Hub, *api.Server) {
	t.Helper()
	e := newEnv(t, openSQLite, cfg)
	return e.ts, e.hub, e.srv
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
	e := newEnvWithHub(t, openSQLite, api.Config{}, hub.Config{PingInterval: 100 * time.Millisecond, PongTimeout: 500 * time.Millisecond})
	ts, h := e.ts, e.hub
	ctx := testCtx(t)

	// A live peer on an arbitrary path: its reader answers every ping.
	live := dialPeer(t, ctx, ts.URL+"/any/path/at/all", "peer-live", wire.NewDocID())

	// A dead peer: it joins and then never reads, so its pongs never come.
	// (coder/websocket answers pings only inside Read.)
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/sync"
	dead, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dead.CloseNow()
	join, err := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "peer-dead", SupportedProtocolVersions: []string{wire.ProtocolVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Write(ctx, websocket.MessageBinary, join); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, testwait.Default, "both peers connected", func() bool { return h.Len() == 2 })
	// The dead peer is dropped after a pong timeout, several ping intervals
	// in which the live peer must have stayed.
	testwait.For(t, testwait.Default, "the dead peer dropped", func() bool { return h.Len() == 1 })
	select {
	case <-live.Ended():
		t.Fatal("the live peer was dropped too")
	default:
	}
	// The live peer is still served.
	live.sendSync(ctx, wire.TypeRequest)
	live.syncUntil(ctx, "doc-unavailable", func(m wire.Message) bool { return m.Type == wire.TypeDocUnavailable })
	if h.Len() != 1 {
		t.Fatalf("%d connections, want the live peer only", h.Len())
	}
}
