package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// response is one HTTP answer, read in full.
type response struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r response) String() string {
	return r.method + " " + r.path + " = " + http.StatusText(r.status) + " " + string(r.body)
}

// do sends one request to the server; body may be nil. A non-nil body with
// an empty contentType is sent as JSON.
func (e *env) do(t *testing.T, method, path string, body []byte, contentType string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	return e.send(t, req)
}

// send sends req and reads the whole answer; a 5xx fails the test.
func (e *env) send(t *testing.T, req *http.Request) response {
	t.Helper()
	path := strings.TrimPrefix(req.URL.String(), e.ts.URL)
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, path, err)
	}
	r := response{method: req.Method, path: path, status: resp.StatusCode, header: resp.Header, body: b}
	if r.status >= 500 {
		t.Errorf("server error: %s", r)
	}
	return r
}

// want checks the status and decodes the JSON body into v (if not nil).
func (r response) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s, want status %d", r, status)
	}
	if v == nil {
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("%s: Content-Type %q, want JSON", r, ct)
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: decode: %v", r, err)
	}
}

// wantError checks that r is a JSON error with the status and code.
func (r response) wantError(t *testing.T, status int, code string) {
	t.Helper()
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	r.want(t, status, &e)
	if e.Error.Code != code || e.Error.Message == "" {
		t.Fatalf("%s: want error code %q with a message", r, code)
	}
}

// jsonValue decodes JSON text for comparisons (numbers as json.Number).
func jsonValue(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("bad test JSON %q: %v", s, err)
	}
	return v
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// created is the answer to POST /docs, PUT .../binary and fork.
type created struct {
	ID         wire.DocID `json:"id"`
	URL        string     `json:"url"`
	Heads      []string   `json:"heads"`
	ForkedFrom wire.DocID `json:"forked_from"`
}

// metadata is the answer to GET /docs/{id}.
type metadata struct {
	ID            wire.DocID `json:"id"`
	URL           string     `json:"url"`
	Heads         []string   `json:"heads"`
	SizeBytes     int64      `json:"size_bytes"`
	SnapshotBytes int64      `json:"snapshot_bytes"`
	ChangeCount   int64      `json:"change_count"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
	LivePeers     []string   `json:"live_peers"`
}

// changed is the answer to POST /docs/{id}/changes.
type changed struct {
	Hash  string   `json:"hash"`
	Heads []string `json:"heads"`
}

// history is the answer to GET /docs/{id}/history.
type history struct {
	Changes []struct {
		Hash    string    `json:"hash"`
		Actor   string    `json:"actor"`
		Seq     uint64    `json:"seq"`
		Time    time.Time `json:"time"`
		Message string    `json:"message"`
		Deps    []string  `json:"deps"`
	} `json:"changes"`
	Total      int    `json:"total"`
	NextCursor string `json:"next_cursor"`
}

// listing is the answer to GET /docs.
type listing struct {
	Docs []struct {
		ID  wire.DocID `json:"id"`
		URL string     `json:"url"`
	} `json:"docs"`
	NextCursor *string `json:"next_cursor"`
}

// create makes a document with content (JSON text; "" sends no body).
func (e *env) create(t *testing.T, content string) created {
	t.Helper()
	var body []byte
	if content != "" {
		body = []byte(content)
	}
	var c created
	e.do(t, "POST", "/api/v1/docs", body, "").want(t, http.StatusCreated, &c)
	if _, err := wire.ParseDocID(string(c.ID)); err != nil || c.URL != "automerge:"+string(c.ID) || len(c.Heads) != 1 || len(c.Heads[0]) != 64 {
		t.Fatalf("create answered %+v", c)
	}
	return c
}

func (e *env) meta(t *testing.T, id wire.DocID) metadata {
	t.Helper()
	var m metadata
	e.do(t, "GET", "/api/v1/docs/"+string(id), nil, "").want(t, http.StatusOK, &m)
	return m
}

// content returns the document's content as decoded JSON.
func (e *env) content(t *testing.T, id wire.DocID) any {
	t.Helper()
	var v any
	e.do(t, "GET", "/api/v1/docs/"+string(id)+"/content", nil, "").want(t, http.StatusOK, &v)
	return v
}

// wantContent checks the document's content against JSON text.
func (e *env) wantContent(t *testing.T, id wire.DocID, want string) {
	t.Helper()
	if got := e.content(t, id); !reflect.DeepEqual(got, jsonValue(t, want)) {
		t.Fatalf("content of %s = %s, want %s", id, mustJSON(t, got), want)
	}
}

// change applies ops (a JSON array) with a message.
func (e *env) change(t *testing.T, id wire.DocID, ops, message string) changed {
	t.Helper()
	body := `{"ops":` + ops + `,"message":` + mustJSON(t, message) + `}`
	var c changed
	e.do(t, "POST", "/api/v1/docs/"+string(id)+"/changes", []byte(body), "").want(t, http.StatusOK, &c)
	if len(c.Hash) != 64 || !reflect.DeepEqual(c.Heads, []string{c.Hash}) {
		t.Fatalf("change answered %+v, want the new change as the only head", c)
	}
	return c
}
