package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// AccessConfig says who may connect and what they may do. The zero value
// is the development default: anonymous peers with write access to every
// document, and an open REST API (the binary only allows that on loopback
// addresses unless --allow-anonymous is given).
type AccessConfig struct {
	// Verifier checks access tokens; nil means the server accepts none.
	Verifier *auth.Verifier
	// AdminKey, when set, is accepted as "Authorization: Bearer <key>" on
	// the REST API (compared in constant time).
	AdminKey string
	// AllowAnonymous lets clients without a token connect with write access
	// to every document even though a Verifier is configured.
	AllowAnonymous bool
	// MetricsAuth puts /metrics behind the same credentials as the REST API.
	MetricsAuth bool
	// AllowedOrigins are the host patterns (path.Match syntax, e.g.
	// "app.example.com" or "*.example.com") browsers may open WebSockets
	// from; empty allows any origin, as stock servers do.
	AllowedOrigins []string
	// Revocations persists revoked token IDs; nil keeps none.
	Revocations Revocations
}

// Revocations is where revoked token IDs are kept, so that a restart does
// not forget them. Both docstore stores implement it.
type Revocations interface {
	// RevokeToken records that the token with ID jti is refused from now
	// on; expires is when the token would have expired anyway (the record
	// can be dropped after it).
	RevokeToken(ctx context.Context, jti string, expires time.Time) error
	// TokenRevoked reports whether jti was revoked.
	TokenRevoked(ctx context.Context, jti string) (bool, error)
}

// revocationMargin is how long a revocation is kept after the token's
// expiry: more than any verifier leeway.
const revocationMargin = time.Hour

// secured reports whether credentials are configured at all.
func (a AccessConfig) secured() bool { return a.Verifier != nil || a.AdminKey != "" }

// The reasons a token is refused. On the REST API every one of them is
// errUnauthorized; a WebSocket client is told the reason in an error
// message, then the connection is closed (refuseWebSocket).
var (
	errUnauthorized  = errorf(http.StatusUnauthorized, "unauthorized", "missing or invalid credentials: send an admin key or an admin-scoped token as Authorization: Bearer …")
	errTokenRequired = errorf(http.StatusUnauthorized, "token_required", "this server needs an access token: connect with ?token=<JWT>")
	errTokenExpired  = errorf(http.StatusUnauthorized, "invalid_token", "the access token has expired: connect with a fresh one")
	errTokenRevoked  = errorf(http.StatusUnauthorized, "token_revoked", "the access token was revoked")
	errNoTokens      = errorf(http.StatusUnauthorized, "tokens_not_accepted", "this server is not configured to accept access tokens")
)

// claimGrants gives a connection the access its token's claims grant.
type claimGrants struct{ c *auth.Claims }

func (g claimGrants) Access(doc wire.DocID) hub.Access { return g.c.AccessTo(string(doc)) }

// verify checks a token and that it was not revoked.
func (s *Server) verify(ctx context.Context, token string) (*auth.Claims, error) {
	a := s.cfg.Access
	if a.Verifier == nil {
		return nil, errNoTokens
	}
	claims, err := a.Verifier.Verify(token)
	switch {
	case errors.Is(err, auth.ErrExpired):
		return nil, errTokenExpired
	case err != nil:
		return nil, errorf(http.StatusUnauthorized, "invalid_token", err.Error())
	}
	if claims.ID != "" && a.Revocations != nil {
		revoked, err := a.Revocations.TokenRevoked(ctx, claims.ID)
		if err != nil {
			return nil, fmt.Errorf("revocation lookup: %w", err)
		}
		if revoked {
			return nil, errTokenRevoked
		}
	}
	return claims, nil
}

// session works out a WebSocket client's session from its ?token=.
func (s *Server) session(r *http.Request) (hub.Session, error) {
	token := r.URL.Query().Get("token")
	if token == "" {
		if s.cfg.Access.Verifier != nil && !s.cfg.Access.AllowAnonymous {
			return hub.Session{}, errTokenRequired
		}
		return hub.Session{}, nil
	}
	claims, err := s.verify(r.Context(), token)
	if err != nil {
		return hub.Session{}, err
	}
	sess := hub.Session{Grants: claimGrants{claims}, TokenID: claims.ID, Subject: claims.Subject}
	if exp, ok := claims.ExpiresAt(); ok {
		// The verifier's leeway is for clock skew on REST calls; a
		// connection ends exactly at exp, so it cannot start after it.
		if !time.Now().Before(exp) {
			return hub.Session{}, errTokenExpired
		}
		sess.Expires = exp
	}
	return sess, nil
}

// requireAdmin guards the REST API: an admin key or an admin-scoped token,
// when any credentials are configured.
func (s *Server) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.checkAdmin(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) checkAdmin(r *http.Request) error {
	a := s.cfg.Access
	if !a.secured() {
		return nil
	}
	bearer, ok := auth.BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return errUnauthorized
	}
	if auth.AdminKeyMatches(a.AdminKey, bearer) {
		return nil
	}
	if a.Verifier == nil {
		return errUnauthorized
	}
	claims, err := s.verify(r.Context(), bearer)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			return errUnauthorized
		}
		return err
	}
	if !claims.Admin {
		return errorf(http.StatusForbidden, "forbidden", "the token is not admin-scoped")
	}
	return nil
}

func (s *Server) mountAccess(r chi.Router) {
	r.Post("/docs/{id}/peers/revoke", s.revokeDocPeers)
	r.Post("/tokens/revoke", s.revokeToken)
}

// revokeDocPeers disconnects the live peers of a document at once and
// revokes the tokens they used, so that they cannot reconnect with them.
func (s *Server) revokeDocPeers(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sessions := s.hub.DisconnectDoc(id)
	revoked := []string{}
	for _, sess := range sessions {
		if sess.TokenID == "" {
			continue
		}
		if err := s.revoke(r.Context(), sess.TokenID, sess.Expires); err != nil {
			s.writeError(w, r, err)
			return
		}
		revoked = append(revoked, sess.TokenID)
	}
	writeJSON(w, http.StatusOK, map[string]any{"disconnected": len(sessions), "revoked_tokens": revoked})
}

// revokeRequest is the body of POST /tokens/revoke.
type revokeRequest struct {
	JTI string `json:"jti"`
	// ExpiresAt is when the token expires, if known; the revocation is kept
	// until then (default: 30 days).
	ExpiresAt *time.Time `json:"expires_at"`
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	var req revokeRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.JTI == "" {
		s.writeError(w, r, errorf(http.StatusBadRequest, "invalid_jti", "jti is required"))
		return
	}
	expires := time.Now().Add(30 * 24 * time.Hour)
	if req.ExpiresAt != nil {
		expires = *req.ExpiresAt
	}
	if err := s.revoke(r.Context(), req.JTI, expires); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"jti": req.JTI, "disconnected": s.hub.Revoke(req.JTI)})
}

// revoke persists a revocation and closes the token's live connections.
func (s *Server) revoke(ctx context.Context, jti string, expires time.Time) error {
	if s.cfg.Access.Revocations == nil {
		return errorf(http.StatusNotImplemented, "revocation_unavailable", "this server keeps no revocations")
	}
	if expires.IsZero() {
		expires = time.Now().Add(30 * 24 * time.Hour)
	}
	// Keep the record past the token's expiry by more than any leeway the
	// verifier allows for clock skew, so that it cannot come back.
	if err := s.cfg.Access.Revocations.RevokeToken(ctx, jti, expires.Add(revocationMargin)); err != nil {
		return err
	}
	s.hub.Revoke(jti)
	return nil
}
