package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/golang-jwt/jwt/v5"
)

// MintHS256 signs c as an HS256 token with secret, which must be at least
// MinSecretLen bytes. It refuses claims that Verify would refuse regardless
// of the time: no exp, or a malformed docs claim. It sets no claim itself;
// the caller fills in exp, iat, jti and so on.
func MintHS256(secret []byte, c Claims) (string, error) {
	if err := checkSecret(secret); err != nil {
		return "", err
	}
	return mint(jwt.SigningMethodHS256, secret, &c)
}

// MintEdDSA signs c as an EdDSA (Ed25519) token with key. Like MintHS256 it
// refuses claims without exp or with a malformed docs claim, and sets no
// claim itself.
func MintEdDSA(key ed25519.PrivateKey, c Claims) (string, error) {
	if len(key) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("auth: Ed25519 private key is %d bytes; it must be %d", len(key), ed25519.PrivateKeySize)
	}
	return mint(jwt.SigningMethodEdDSA, key, &c)
}

func mint(m jwt.SigningMethod, key any, c *Claims) (string, error) {
	if err := c.validate(); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		return "", fmt.Errorf("auth: signing token: %w", err)
	}
	return s, nil
}

// NewJTI returns a fresh random token ID for the jti claim: 128 random bits,
// base64url-encoded without padding (22 characters).
func NewJTI() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}
