package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/tandem-sync/tandem/api"
)

// openAPIDoc is the part of openapi.json the tests read.
type openAPIDoc struct {
	OpenAPI string `json:"openapi"`
	Info    struct {
		Title   string `json:"title"`
		Version string `json:"version"`
	} `json:"info"`
	Servers []struct {
		URL string `json:"url"`
	} `json:"servers"`
	Paths map[string]map[string]json.RawMessage `json:"paths"`
}

type openAPIOp struct {
	Summary   string                     `json:"summary"`
	Responses map[string]json.RawMessage `json:"responses"`
}

var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

func loadOpenAPI(t *testing.T) (openAPIDoc, []byte) {
	t.Helper()
	raw, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(raw) {
		t.Fatal("openapi.json is not valid JSON")
	}
	var doc openAPIDoc
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	return doc, raw
}

// specOps returns "METHOD /api/v1/path" for every operation in the spec.
func specOps(t *testing.T, doc openAPIDoc) map[string]openAPIOp {
	t.Helper()
	ops := map[string]openAPIOp{}
	for path, item := range doc.Paths {
		for key, raw := range item {
			if !slices.Contains(openAPIMethods, key) {
				if key != "parameters" && key != "summary" && key != "description" && key != "servers" {
					t.Errorf("path %s: unexpected key %q", path, key)
				}
				continue
			}
			var op openAPIOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s %s: %v", key, path, err)
			}
			ops[strings.ToUpper(key)+" "+doc.Servers[0].URL+path] = op
		}
	}
	return ops
}

// routerOps walks the router for every route under /api/v1.
func routerOps(t *testing.T, srv *api.Server) []string {
	t.Helper()
	var ops []string
	err := chi.Walk(srv.Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = strings.TrimSuffix(route, "/*") // chi's suffix on mounted subrouters
		if route != "/api/v1" && !strings.HasPrefix(route, "/api/v1/") {
			return nil
		}
		ops = append(ops, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ops)
	return slices.Compact(ops)
}

func TestOpenAPIMatchesRouter(t *testing.T) {
	t.Parallel()
	doc, _ := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q, want 3.x", doc.OpenAPI)
	}
	if doc.Info.Title == "" || doc.Info.Version == "" {
		t.Fatalf("info %+v lacks a title or version", doc.Info)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != "/api/v1" {
		t.Fatalf("servers %+v, want one at /api/v1", doc.Servers)
	}
	spec := specOps(t, doc)
	e := newEnv(t, openSQLite, api.Config{})
	routes := routerOps(t, e.srv)
	if len(routes) < 10 {
		t.Fatalf("walked only %d API routes: %v", len(routes), routes)
	}
	for _, op := range routes {
		if _, ok := spec[op]; !ok {
			t.Errorf("route %s is not in openapi.json", op)
		}
	}
	for op := range spec {
		if !slices.Contains(routes, op) {
			t.Errorf("openapi.json has %s, which the router does not serve", op)
		}
	}
}

func TestOpenAPIOperations(t *testing.T) {
	t.Parallel()
	doc, raw := loadOpenAPI(t)
	spec := specOps(t, doc)
	// Statuses the API answers each operation with (the document tests
	// provoke every one of them); the spec must declare them all.
	returns := map[string][]string{
		"GET /api/v1/openapi.json":            {"200"},
		"POST /api/v1/docs":                   {"201", "400", "413"},
		"GET /api/v1/docs":                    {"200", "400"},
		"GET /api/v1/docs/{id}":               {"200", "400", "404"},
		"DELETE /api/v1/docs/{id}":            {"204", "400", "404"},
		"GET /api/v1/docs/{id}/content":       {"200", "400", "404", "422"},
		"GET /api/v1/docs/{id}/binary":        {"200", "400", "404"},
		"PUT /api/v1/docs/{id}/binary":        {"200", "201", "400", "413"},
		"POST /api/v1/docs/{id}/changes":      {"200", "400", "404", "413", "422"},
		"GET /api/v1/docs/{id}/history":       {"200", "400", "404"},
		"POST /api/v1/docs/{id}/fork":         {"201", "400", "404", "413", "422"},
		"POST /api/v1/docs/{id}/peers/revoke": {"200", "400"},
		"POST /api/v1/tokens/revoke":          {"200", "400", "413"},
		"GET /api/v1/webhooks/deliveries":     {"200", "400", "404"},
	}
	// With credentials configured, every route but the spec itself answers
	// 401 and 403 (TestRESTCredentials).
	for op := range returns {
		if op != "GET /api/v1/openapi.json" {
			returns[op] = append(returns[op], "401", "403")
		}
	}
	for op, statuses := range returns {
		o, ok := spec[op]
		if !ok {
			t.Errorf("%s is not in openapi.json", op)
			continue
		}
		if o.Summary == "" {
			t.Errorf("%s has no summary", op)
		}
		for _, s := range statuses {
			if _, ok := o.Responses[s]; !ok {
				t.Errorf("%s: the API answers %s, which openapi.json does not declare", op, s)
			}
		}
	}
	if len(spec) != len(returns) {
		t.Errorf("openapi.json has %d operations, the test knows %d", len(spec), len(returns))
	}

	// Every local $ref resolves.
	var whole any
	if err := json.Unmarshal(raw, &whole); err != nil {
		t.Fatal(err)
	}
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					ref, _ := x.(string)
					if !resolves(whole, ref) {
						t.Errorf("%s: $ref %q does not resolve", at, ref)
					}
					continue
				}
				walk(x, at+"/"+k)
			}
		case []any:
			for i, x := range v {
				walk(x, fmt.Sprintf("%s/%d", at, i))
			}
		}
	}
	walk(whole, "#")
}

// resolves reports whether ref, a local JSON pointer such as
// "#/components/schemas/Error", names a value in doc.
func resolves(doc any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	cur := doc
	for part := range strings.SplitSeq(strings.TrimPrefix(ref, "#/"), "/") {
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	_, raw := loadOpenAPI(t)
	e := newEnv(t, openSQLite, api.Config{})
	r := e.do(t, "GET", "/api/v1/openapi.json", nil, "")
	r.want(t, http.StatusOK, nil)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q", ct)
	}
	if !bytes.Equal(r.body, raw) {
		t.Fatal("GET /api/v1/openapi.json does not serve openapi.json")
	}
}
