package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"strings"
)

// AdminKeyMatches reports whether presented is the configured admin key
// (--admin-key / TANDEM_ADMIN_KEY), in constant time. It is always false when
// no admin key is configured, so an empty key never opens the REST API.
func AdminKeyMatches(configured, presented string) bool {
	if configured == "" {
		return false
	}
	// Compare digests so that neither the time taken nor an early exit on
	// unequal lengths reveals the key's length.
	c, p := sha256.Sum256([]byte(configured)), sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(c[:], p[:]) == 1
}

// BearerToken extracts the token from an Authorization header value of the
// form "Bearer <token>". The scheme is matched case-insensitively and
// surrounding spaces are ignored; ok is false for any other scheme, an empty
// token, or a token containing spaces.
func BearerToken(header string) (token string, ok bool) {
	scheme, rest, found := strings.Cut(strings.TrimSpace(header), " ")
	if !found || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(rest, " ")
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		return "", false
	}
	return token, true
}
