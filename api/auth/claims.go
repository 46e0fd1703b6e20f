package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// ParseAccess parses a docs claim value: "read" or "write" (exactly; no other
// spelling). ok is false for anything else.
func ParseAccess(s string) (a hub.Access, ok bool) {
	switch s {
	case "read":
		return hub.AccessRead, true
	case "write":
		return hub.AccessWrite, true
	}
	return hub.AccessNone, false
}

// Wildcard is the docs claim key that stands for every document.
const Wildcard = "*"

// Claims is the payload of a Tandem access token. See the package
// documentation for the format.
type Claims struct {
	// Docs maps document IDs, or Wildcard ("*") for every document, to
	// "read" or "write". JSON: "docs".
	Docs map[string]string `json:"docs,omitempty"`
	// Admin, when true, grants the REST API as an admin. JSON: "admin".
	Admin bool `json:"admin,omitempty"`
	// RegisteredClaims holds the standard claims: exp (required), nbf, iat,
	// jti and sub (the principal in logs), and any iss or aud, which Tandem
	// ignores.
	jwt.RegisteredClaims
}

// AccessTo returns the access the claims grant to the document docID, a bare
// document ID as wire.ParseDocID returns it. An entry for docID itself takes
// precedence over the "*" entry, whether it grants more or less; an entry
// whose value is not "read" or "write" grants hub.AccessNone. A nil *Claims
// grants hub.AccessNone.
func (c *Claims) AccessTo(docID string) hub.Access {
	if c == nil {
		return hub.AccessNone
	}
	v, ok := c.Docs[docID]
	if !ok {
		v = c.Docs[Wildcard] // "" (None) when absent
	}
	a, _ := ParseAccess(v)
	return a
}

// ExpiresAt returns the token's expiry (the exp claim), and false when it has
// none. Tokens that Verifier.Verify accepts always have one.
func (c *Claims) ExpiresAt() (time.Time, bool) {
	if c == nil || c.RegisteredClaims.ExpiresAt == nil {
		return time.Time{}, false
	}
	return c.RegisteredClaims.ExpiresAt.Time, true
}

// validate checks what Verify requires of the payload beyond the signature
// and the times: an exp claim, and a well-formed docs claim.
func (c *Claims) validate() error {
	if c.RegisteredClaims.ExpiresAt == nil {
		return errNoExpiry
	}
	return validateDocs(c.Docs)
}

var errNoExpiry = errors.New(`token has no "exp" claim; tokens without an expiry are refused`)

func validateDocs(docs map[string]string) error {
	for k, v := range docs {
		if _, ok := ParseAccess(v); !ok {
			return fmt.Errorf(`docs[%q] is %q; it must be "read" or "write"`, k, v)
		}
		if k == Wildcard {
			continue
		}
		id, err := wire.ParseDocID(k)
		if err != nil {
			return fmt.Errorf("docs key %q: %w", k, err)
		}
		if string(id) != k {
			return fmt.Errorf("docs key %q: use the bare document ID %q", k, id)
		}
	}
	return nil
}
