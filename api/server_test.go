package api_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
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
	if code, body := get(t, ts.URL+"/"); code != 200 || !strings.Contains(body, `<script type="module" src="/assets/app.js">`) {
		t.Fatalf("GET / = %d %q", code, body)
	}
	if code, body := get(t, ts.URL+"/config.json"); code != 200 || !strings.Contains(body, `"version": "v-test"`) {
		t.Fatalf("GET /config.json = %d %q", code, body)
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

// TestDemoPages checks the embedded demo: its pages, its assets (types,
// revalidation, compression), /config.json, and that a WebSocket upgrade on
// any of its paths is still a sync connection.
func TestDemoPages(t *testing.T) {
	t.Parallel()
	ts, _, _ := newServer(t, api.Config{Version: "v-test"})
	do := func(path string, hdr map[string]string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", ts.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultTransport.RoundTrip(req) // no transparent gzip
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	docID := wire.NewDocID()
	var index string
	for _, p := range []string{"/", "/d/" + string(docID), "/admin", "/admin/anything"} {
		resp := do(p, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
			!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Fatalf("GET %s = %d %v", p, resp.StatusCode, resp.Header)
		}
		if index == "" {
			index = string(body)
		} else if string(body) != index {
			t.Fatalf("GET %s is not the same page as GET /", p)
		}
	}
	for path, typ := range map[string]string{
		"/assets/app.js":         "text/javascript; charset=utf-8",
		"/assets/app.css":        "text/css; charset=utf-8",
		"/assets/automerge.wasm": "application/wasm",
	} {
		resp := do(path, nil)
		body, _ := io.ReadAll(resp.Body)
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != typ || len(body) < 1000 || etag == "" {
			t.Fatalf("GET %s = %d %q, %d bytes, ETag %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), etag)
		}
		if path == "/assets/automerge.wasm" && !bytes.HasPrefix(body, []byte("\x00asm")) {
			t.Fatalf("%s is not WebAssembly", path)
		}
		if r := do(path, map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
			t.Fatalf("GET %s with its ETag = %d, want 304", path, r.StatusCode)
		}
		gz := do(path, map[string]string{"Accept-Encoding": "gzip"})
		zr, err := gzip.NewReader(gz.Body)
		if err != nil || gz.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("GET %s with gzip: %v %v", path, gz.Header, err)
		}
		if unzipped, _ := io.ReadAll(zr); !bytes.Equal(unzipped, body) {
			t.Fatalf("GET %s: the gzip body differs", path)
		}
	}
	if r := do("/favicon.ico", nil); r.StatusCode != 200 || r.Header.Get("Content-Type") != "image/svg+xml" {
		t.Fatalf("GET /favicon.ico = %d %v", r.StatusCode, r.Header)
	}
	if r := do("/assets/nope.js", nil); r.StatusCode != 404 {
		t.Fatalf("unknown asset = %d", r.StatusCode)
	}
	var cfg map[string]any
	if err := json.NewDecoder(do("/config.json", nil).Body).Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["tokens"] != false || cfg["anonymous"] != true || cfg["admin_auth"] != false || cfg["webhooks"] != false || cfg["version"] != "v-test" {
		t.Fatalf("config.json = %v", cfg)
	}

	// Upgrades on the demo's paths are sync connections.
	ctx := testCtx(t)
	for _, p := range []string{"/", "/d/" + string(docID), "/admin", "/assets/app.js"} {
		peer := dialPeer(t, ctx, ts.URL+p, wire.PeerID("peer-web-"+strings.ReplaceAll(p, "/", "_")), docID)
		peer.Close()
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
