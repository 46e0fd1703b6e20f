package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors returned by Verifier.Verify. Every error Verify returns wraps
// ErrInvalidToken; an expired token's error wraps ErrExpired too, and a token
// used before its nbf time wraps ErrNotYetValid, so the server can tell the
// client why (errors.Is).
var (
	ErrInvalidToken = errors.New("invalid token")
	ErrExpired      = errors.New("token has expired")
	ErrNotYetValid  = errors.New("token is not valid yet")
)

// MaxTokenLen is the longest token Verify reads, in bytes; longer ones are
// refused before any parsing. It leaves room for a few hundred docs entries.
const MaxTokenLen = 16 << 10

// MinSecretLen is the shortest HS256 secret accepted, in bytes (RFC 7518
// §3.2: at least the size of the hash output).
const MinSecretLen = 32

// checkSecret refuses an HS256 secret shorter than MinSecretLen, for
// verifying and minting alike.
func checkSecret(secret []byte) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("auth: token secret is %d bytes; it must be at least %d", len(secret), MinSecretLen)
	}
	return nil
}

// Algorithm names, as they appear in a token's "alg" header.
const (
	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
)

// VerifierConfig configures a Verifier. At least one of Secret and PublicKeys
// must be set; a token is accepted only if it is signed with an algorithm
// that has a key here.
type VerifierConfig struct {
	// Secret is the shared HS256 secret (at least MinSecretLen bytes). Empty:
	// HS256 tokens are refused.
	Secret []byte
	// PublicKeys are the Ed25519 keys EdDSA tokens may be signed with (more
	// than one while rotating keys). Empty: EdDSA tokens are refused.
	PublicKeys []ed25519.PublicKey
	// Leeway is the clock skew tolerated when checking exp and nbf; 0 means
	// none. It must not be negative.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Verifier checks access tokens. It holds no mutable state and is safe for
// concurrent use.
type Verifier struct {
	secret []byte
	keys   []ed25519.PublicKey
	algs   []string
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for cfg, or an error if cfg has no key, a
// secret shorter than MinSecretLen, a public key that is not 32 bytes, or a
// negative leeway. It copies the keys.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{}
	if len(cfg.Secret) > 0 {
		if err := checkSecret(cfg.Secret); err != nil {
			return nil, err
		}
		v.secret = slices.Clone(cfg.Secret)
		v.algs = append(v.algs, AlgHS256)
	}
	for i, k := range cfg.PublicKeys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("auth: public key %d is %d bytes; an Ed25519 public key is %d", i, len(k), ed25519.PublicKeySize)
		}
		v.keys = append(v.keys, slices.Clone(k))
	}
	if len(v.keys) > 0 {
		v.algs = append(v.algs, AlgEdDSA)
	}
	if len(v.algs) == 0 {
		return nil, errors.New("auth: a token verifier needs a secret or at least one public key")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: negative leeway %v", cfg.Leeway)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(v.algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
	)
	return v, nil
}

// Algorithms returns the signing algorithms v accepts: "HS256", "EdDSA" or
// both.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.algs) }

// Verify checks token's signature and claims and returns the claims.
//
// The token must be signed with HS256 under the configured secret or with
// EdDSA under one of the configured public keys; any other algorithm
// (including "none"), or one for which no key is configured, is refused. The
// token must carry an exp claim: tokens without an expiry are refused, which
// keeps revocation lists bounded (a revoked jti need only be remembered until
// it expires). exp and nbf are checked against Now with the configured
// leeway. Every docs value must be "read" or "write" and every docs key a
// bare document ID or "*".
//
// Errors wrap ErrInvalidToken, and ErrExpired or ErrNotYetValid where they
// apply. Verify does not check revocation: the caller looks up the claims'
// jti (ID) itself.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	if len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: token is %d bytes, longer than %d", ErrInvalidToken, len(token), MaxTokenLen)
	}
	var c Claims
	tok, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil {
		return nil, v.explain(tok, err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return &c, nil
}

// key is the jwt.Keyfunc: it picks the key by the token's algorithm, and
// refuses algorithms with no configured key (WithValidMethods does too; this
// is the second lock on the door against algorithm confusion).
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch {
	case t.Method == jwt.SigningMethodHS256 && v.secret != nil:
		return v.secret, nil
	case t.Method == jwt.SigningMethodEdDSA && len(v.keys) > 0:
		set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(v.keys))}
		for i, k := range v.keys {
			set.Keys[i] = k
		}
		return set, nil
	}
	return nil, v.algError(t)
}

func (v *Verifier) algError(t *jwt.Token) error {
	alg, _ := t.Header["alg"].(string)
	if alg == "" {
		return errors.New(`token has no "alg" header`)
	}
	return fmt.Errorf("signing algorithm %q is not accepted (this server accepts %s)", alg, strings.Join(v.algs, " and "))
}

// explain turns a jwt error into one that wraps our sentinels and says what
// is wrong in words a client can act on.
func (v *Verifier) explain(t *jwt.Token, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return fmt.Errorf("%w: malformed: %v", ErrInvalidToken, err)
	case t != nil && (t.Method == nil || !slices.Contains(v.algs, t.Method.Alg())):
		return fmt.Errorf("%w: %v", ErrInvalidToken, v.algError(t))
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return fmt.Errorf("%w: signature does not verify", ErrInvalidToken)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: %w", ErrInvalidToken, ErrNotYetValid)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return fmt.Errorf("%w: %w", ErrInvalidToken, errNoExpiry)
	}
	return fmt.Errorf("%w: %v", ErrInvalidToken, err)
}
