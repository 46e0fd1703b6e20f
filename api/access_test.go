package api_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/sync/wire"
)

const (
	testAdminKey = "test-admin-key-0123456789abcdef"
	testSecret   = "test-secret-0123456789abcdef-0123456789"
)

func mintToken(t *testing.T, admin bool, jti string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testSecret), auth.Claims{
		Docs:  map[string]string{"*": "write"},
		Admin: admin,
		RegisteredClaims: jwt.RegisteredClaims{
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
			ID:        jti,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// withBearer sends one request with an Authorization header.
func (e *env) withBearer(t *testing.T, method, path, bearer string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return e.send(t, req)
}

// TestRESTCredentials checks that, with credentials configured, every REST
// route but the spec needs an admin key or an admin-scoped token.
func TestRESTCredentials(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite, api.Config{Access: api.AccessConfig{Verifier: v, AdminKey: testAdminKey}})
	user := mintToken(t, false, "")
	admin := mintToken(t, true, "")

	var routes [][2]string
	err = chi.Walk(e.srv.Router(), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/api/v1/") && route != "/api/v1/openapi.json" {
			routes = append(routes, [2]string{method, strings.ReplaceAll(route, "{id}", string(wire.NewDocID()))})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) < 10 {
		t.Fatalf("walked %d routes", len(routes))
	}
	for _, rt := range routes {
		for _, bearer := range []string{"", "wrong-key", testAdminKey + "x", "not.a.jwt"} {
			r := e.withBearer(t, rt[0], rt[1], bearer, nil)
			r.wantError(t, http.StatusUnauthorized, "unauthorized")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("%s: no WWW-Authenticate", r)
			}
		}
		e.withBearer(t, rt[0], rt[1], user, nil).wantError(t, http.StatusForbidden, "forbidden")
	}
	// The spec is public.
	e.withBearer(t, "GET", "/api/v1/openapi.json", "", nil).want(t, http.StatusOK, nil)
	// The admin key and an admin token both work.
	var c created
	e.withBearer(t, "POST", "/api/v1/docs", testAdminKey, []byte(`{"a": 1}`)).want(t, http.StatusCreated, &c)
	var v1 any
	e.withBearer(t, "GET", api1+string(c.ID)+"/content", admin, nil).want(t, http.StatusOK, &v1)
	if mustJSON(t, v1) != `{"a":1}` {
		t.Fatalf("content %s", mustJSON(t, v1))
	}
	// Unknown routes and methods are still JSON errors (after the check).
	if r := e.withBearer(t, "GET", "/api/v1/nope", testAdminKey, nil); r.status != http.StatusNotFound {
		t.Fatalf("%s", r)
	}
}

// TestRevokeRoutes drives the two revocation routes.
func TestRevokeRoutes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(testSecret)})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, sk.open, api.Config{Access: api.AccessConfig{Verifier: v, AdminKey: testAdminKey}})
		ctx := testCtx(t)
		var c created
		e.withBearer(t, "POST", "/api/v1/docs", testAdminKey, []byte(`{"a": 1}`)).want(t, http.StatusCreated, &c)

		jti := auth.NewJTI()
		p := dialPeer(t, ctx, e.ts.URL+"/?token="+mintToken(t, false, jti), "peer-token", c.ID)
		p.request(ctx, hashes(t, c.Heads))

		e.withBearer(t, "POST", api1+"not-an-id/peers/revoke", testAdminKey, nil).wantError(t, http.StatusBadRequest, "invalid_document_id")
		var rev struct {
			Disconnected  int      `json:"disconnected"`
			RevokedTokens []string `json:"revoked_tokens"`
		}
		e.withBearer(t, "POST", api1+string(c.ID)+"/peers/revoke", testAdminKey, nil).want(t, http.StatusOK, &rev)
		if rev.Disconnected != 1 || len(rev.RevokedTokens) != 1 || rev.RevokedTokens[0] != jti {
			t.Fatalf("revoke answered %+v, want the peer and its token %s", rev, jti)
		}
		select {
		case <-p.Ended():
		case <-ctx.Done():
			t.Fatal("the revoked peer is still connected")
		}

		e.withBearer(t, "POST", "/api/v1/tokens/revoke", testAdminKey, []byte(`{}`)).wantError(t, http.StatusBadRequest, "invalid_jti")
		e.withBearer(t, "POST", "/api/v1/tokens/revoke", testAdminKey, []byte(`{"jti": "x", "what": 1}`)).wantError(t, http.StatusBadRequest, "invalid_json")
		var tr struct {
			JTI          string `json:"jti"`
			Disconnected int    `json:"disconnected"`
		}
		e.withBearer(t, "POST", "/api/v1/tokens/revoke", testAdminKey, []byte(`{"jti": "other-token"}`)).want(t, http.StatusOK, &tr)
		if tr.JTI != "other-token" || tr.Disconnected != 0 {
			t.Fatalf("token revoke answered %+v", tr)
		}
	})
}
