package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/webhook"
)

// receiver is a webhook endpoint that checks signatures, records every
// event it accepts, and refuses the first attempts of some.
type receiver struct {
	t      *testing.T
	secret []byte
	mu     sync.Mutex
	seen   map[int64]map[string]any // event ID → payload
	tries  map[int64]int
	refuse int           // refuse each event this many times first
	bad    int           // requests with a bad signature
	delay  time.Duration // how long each request takes
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	time.Sleep(rc.delay)
	err := webhook.Verify(rc.secret, r.Header.Get("Tandem-Signature"), r.Header.Get("Tandem-Timestamp"), body, webhook.DefaultTolerance, time.Now())
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.bad++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	id := int64(p["id"].(float64))
	rc.tries[id]++
	if rc.tries[id] <= rc.refuse {
		http.Error(w, "not now", http.StatusServiceUnavailable)
		return
	}
	rc.seen[id] = p
}

// events returns the accepted events of a document by type.
func (rc *receiver) count(doc, typ string) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, p := range rc.seen {
		if p["document_id"] == doc && p["type"] == typ {
			n++
		}
	}
	return n
}

func restCall(t *testing.T, s *server, method, path, body string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	_ = json.Unmarshal(b, &out)
	return out
}

// TestWebhooksAtLeastOnceAcrossKill checks that every event reaches a
// receiver at least once, signed, although the receiver refuses each event
// twice and the server is killed with SIGKILL while deliveries are pending.
func TestWebhooksAtLeastOnceAcrossKill(t *testing.T) {
	t.Parallel()
	rc := &receiver{t: t, secret: []byte("webhook-test-secret"), seen: map[int64]map[string]any{}, tries: map[int64]int{}, refuse: 2}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	s := startServer(t, nil, "--data-dir", t.TempDir(), "--webhook-urls", hook.URL,
		"--webhook-secret", string(rc.secret), "--webhook-debounce", "100ms")

	var docs []string
	for i := range 5 {
		created := restCall(t, s, "POST", "/api/v1/docs", fmt.Sprintf(`{"n": %d}`, i))
		id := created["id"].(string)
		docs = append(docs, id)
		restCall(t, s, "POST", "/api/v1/docs/"+id+"/changes", `{"ops":[{"op":"set","path":["edited"],"value":true}]}`)
	}
	restCall(t, s, "DELETE", "/api/v1/docs/"+docs[4], "")

	// Kill the server while the receiver is still refusing first attempts.
	time.Sleep(300 * time.Millisecond)
	s.kill()
	s.restart()

	testwait.For(t, 60*time.Second, "every event delivered", func() bool {
		for i, id := range docs {
			if rc.count(id, "document.created") < 1 {
				return false
			}
			// A deletion drops the document's pending change event.
			if i < 4 && rc.count(id, "document.changed") < 1 {
				return false
			}
			if i == 4 && rc.count(id, "document.deleted") < 1 {
				return false
			}
		}
		return true
	})
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, p := range rc.seen {
		if p["type"] == "document.changed" {
			if heads, _ := p["heads"].([]any); len(heads) != 1 {
				t.Errorf("changed event with heads %v, want the document's one head", p["heads"])
			}
		}
	}
	if rc.bad != 0 {
		t.Errorf("%d requests had bad signatures", rc.bad)
	}
	for id, n := range rc.tries {
		if _, ok := rc.seen[id]; ok && n < rc.refuse+1 {
			t.Errorf("event %d accepted after %d tries, the receiver refuses %d first", id, n, rc.refuse)
		}
	}
	t.Logf("%d events delivered after refusals and a SIGKILL", len(rc.seen))
}
