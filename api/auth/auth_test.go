package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Fixed inputs, so that the tests are deterministic.
var (
	now       = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fixedNow  = func() time.Time { return now }
	secret    = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	priv      = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub       = priv.Public().(ed25519.PublicKey)
	otherPriv = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize))
	otherPub  = otherPriv.Public().(ed25519.PublicKey)
	docA      = string(wire.DocIDFromBytes([]byte("document-A-16byt")))
	docB      = string(wire.DocIDFromBytes([]byte("document-B-16byt")))
	docC      = string(wire.DocIDFromBytes([]byte("document-C-16byt")))
)

// rsaKey is generated once, for the tests that need an RS256 token.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func numeric(t time.Time) *jwt.NumericDate { return jwt.NewNumericDate(t) }

// validClaims returns claims that Verify accepts at now.
func validClaims() Claims {
	return Claims{
		Docs:  map[string]string{docA: "write", Wildcard: "read"},
		Admin: true,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   "alice",
			ID:        "jti-1",
			IssuedAt:  numeric(now.Add(-time.Minute)),
			NotBefore: numeric(now.Add(-time.Minute)),
			ExpiresAt: numeric(now.Add(time.Hour)),
		},
	}
}

// rawSign signs any claims with any method, bypassing Mint's checks, to make
// the tokens Verify must refuse.
func rawSign(t *testing.T, m jwt.SigningMethod, key any, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func mustMintHS(t *testing.T, c Claims) string {
	t.Helper()
	s, err := MintHS256(secret, c)
	if err != nil {
		t.Fatalf("MintHS256: %v", err)
	}
	return s
}

func mustMintEd(t *testing.T, k ed25519.PrivateKey, c Claims) string {
	t.Helper()
	s, err := MintEdDSA(k, c)
	if err != nil {
		t.Fatalf("MintEdDSA: %v", err)
	}
	return s
}

func mustVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func with(f func(c *Claims)) Claims {
	c := validClaims()
	f(&c)
	return c
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	both := VerifierConfig{Secret: secret, PublicKeys: []ed25519.PublicKey{otherPub, pub}}
	tests := []struct {
		name  string
		token func(t *testing.T) string
		cfg   VerifierConfig
	}{
		{"HS256", func(t *testing.T) string { return mustMintHS(t, validClaims()) }, VerifierConfig{Secret: secret}},
		{"HS256 with both configured", func(t *testing.T) string { return mustMintHS(t, validClaims()) }, both},
		{"EdDSA", func(t *testing.T) string { return mustMintEd(t, priv, validClaims()) }, VerifierConfig{PublicKeys: []ed25519.PublicKey{pub}}},
		{"EdDSA second of two keys", func(t *testing.T) string { return mustMintEd(t, priv, validClaims()) }, both},
		{"EdDSA first of two keys", func(t *testing.T) string { return mustMintEd(t, otherPriv, validClaims()) }, both},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, tt.cfg)
			got, err := v.Verify(tt.token(t))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := validClaims()
			if len(got.Docs) != len(want.Docs) || got.Docs[docA] != "write" || got.Docs[Wildcard] != "read" {
				t.Errorf("Docs = %v, want %v", got.Docs, want.Docs)
			}
			if !got.Admin || got.Subject != "alice" || got.ID != "jti-1" {
				t.Errorf("Admin, Subject, ID = %v, %q, %q", got.Admin, got.Subject, got.ID)
			}
			if exp, ok := got.ExpiresAt(); !ok || !exp.Equal(now.Add(time.Hour)) {
				t.Errorf("ExpiresAt() = %v, %v", exp, ok)
			}
			if !got.IssuedAt.Equal(now.Add(-time.Minute)) || !got.NotBefore.Equal(now.Add(-time.Minute)) {
				t.Errorf("iat, nbf = %v, %v", got.IssuedAt, got.NotBefore)
			}
			if got.AccessTo(docA) != hub.AccessWrite || got.AccessTo(docB) != hub.AccessRead {
				t.Errorf("AccessTo = %v, %v", got.AccessTo(docA), got.AccessTo(docB))
			}
		})
	}
}

func TestWireFormat(t *testing.T) {
	t.Parallel()
	tok := mustMintHS(t, validClaims())
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(header), `"alg":"HS256"`) {
		t.Errorf("header = %s", header)
	}
	for _, want := range []string{`"docs":{`, `"*":"read"`, `"` + docA + `":"write"`, `"admin":true`, `"sub":"alice"`, `"jti":"jti-1"`, `"exp":`, `"iat":`, `"nbf":`} {
		if !strings.Contains(string(payload), want) {
			t.Errorf("payload %s lacks %s", payload, want)
		}
	}
	// No admin, no docs: the claims are left out.
	c := validClaims()
	c.Admin, c.Docs = false, nil
	payload, _ = base64.RawURLEncoding.DecodeString(strings.Split(mustMintHS(t, c), ".")[1])
	if strings.Contains(string(payload), "admin") || strings.Contains(string(payload), "docs") {
		t.Errorf("payload = %s", payload)
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	hsOnly := VerifierConfig{Secret: secret}
	edOnly := VerifierConfig{PublicKeys: []ed25519.PublicKey{pub}}
	both := VerifierConfig{Secret: secret, PublicKeys: []ed25519.PublicKey{pub}}
	tests := []struct {
		name    string
		cfg     VerifierConfig
		token   func(t *testing.T) string
		wantIs  error  // besides ErrInvalidToken
		wantMsg string // a substring of the error
	}{
		{"expired", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = numeric(now.Add(-time.Second)) }))
		}, ErrExpired, "expired"},
		{"expires this second", edOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodEdDSA, priv, with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = numeric(now) }))
		}, ErrExpired, "expired"},
		{"not yet valid", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.NotBefore = numeric(now.Add(time.Minute)) }))
		}, ErrNotYetValid, "not valid yet"},
		{"missing exp", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = nil }))
		}, nil, `no "exp"`},
		{"wrong secret", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, []byte("another secret, also 32 bytes ok"), validClaims())
		}, nil, "signature"},
		{"wrong key", edOnly, func(t *testing.T) string { return mustMintEd(t, otherPriv, validClaims()) }, nil, "signature"},
		{"tampered payload", hsOnly, func(t *testing.T) string {
			tok := mustMintHS(t, validClaims())
			parts := strings.Split(tok, ".")
			other := strings.Split(mustMintHS(t, with(func(c *Claims) { c.Docs = map[string]string{Wildcard: "write"} })), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}, nil, "signature"},
		{"alg none", both, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims())
		}, nil, `"none" is not accepted`},
		{"alg confusion: HS256 keyed with the public key, EdDSA-only server", edOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, []byte(pub), validClaims())
		}, nil, `"HS256" is not accepted`},
		{"alg confusion: HS256 keyed with the public key, both configured", both, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, []byte(pub), validClaims())
		}, nil, "signature"},
		{"HS256 with no secret configured", edOnly, func(t *testing.T) string { return mustMintHS(t, validClaims()) }, nil, `"HS256" is not accepted`},
		{"EdDSA with no key configured", hsOnly, func(t *testing.T) string { return mustMintEd(t, priv, validClaims()) }, nil, `"EdDSA" is not accepted`},
		{"RS256", both, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodRS256, rsaKey(), validClaims())
		}, nil, `"RS256" is not accepted`},
		{"HS512", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS512, secret, validClaims())
		}, nil, `"HS512" is not accepted`},
		{"unknown alg", both, func(t *testing.T) string {
			tok := mustMintHS(t, validClaims())
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XX999","typ":"JWT"}`))
			return h + tok[strings.IndexByte(tok, '.'):]
		}, nil, `"XX999" is not accepted`},
		{"no alg", both, func(t *testing.T) string {
			tok := mustMintHS(t, validClaims())
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT"}`))
			return h + tok[strings.IndexByte(tok, '.'):]
		}, nil, `no "alg"`},
		{"docs value admin", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs[docB] = "admin" }))
		}, nil, `must be "read" or "write"`},
		{"docs value Write (case)", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs[Wildcard] = "Write" }))
		}, nil, `must be "read" or "write"`},
		{"docs value empty", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs[docB] = "" }))
		}, nil, `must be "read" or "write"`},
		{"docs value not a string", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"docs": map[string]any{docA: 2}, "exp": now.Add(time.Hour).Unix()})
		}, nil, "malformed"},
		{"docs not an object", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"docs": []string{docA}, "exp": now.Add(time.Hour).Unix()})
		}, nil, "malformed"},
		{"admin not a boolean", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"admin": "true", "exp": now.Add(time.Hour).Unix()})
		}, nil, "malformed"},
		{"bad doc ID", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs["not-a-doc-id"] = "read" }))
		}, wire.ErrInvalidDocID, "not-a-doc-id"},
		{"doc ID with bad checksum", hsOnly, func(t *testing.T) string {
			bad := docA[:len(docA)-1] + map[bool]string{true: "2", false: "3"}[docA[len(docA)-1] != '2']
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs[bad] = "read" }))
		}, wire.ErrInvalidDocID, "checksum"},
		{"doc URL instead of bare ID", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs["automerge:"+docB] = "read" }))
		}, nil, "bare document ID"},
		{"empty doc key", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Docs[""] = "read" }))
		}, wire.ErrInvalidDocID, "docs key"},
		{"garbage", both, func(*testing.T) string { return "not.a.jwt" }, nil, "malformed"},
		{"two segments", both, func(*testing.T) string { return "abc.def" }, nil, "malformed"},
		{"empty", both, func(*testing.T) string { return "" }, nil, "empty"},
		{"too long", hsOnly, func(t *testing.T) string {
			return rawSign(t, jwt.SigningMethodHS256, secret, with(func(c *Claims) { c.Subject = strings.Repeat("x", MaxTokenLen) }))
		}, nil, "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, tt.cfg)
			c, err := v.Verify(tt.token(t))
			if err == nil {
				t.Fatalf("Verify accepted the token: %+v", c)
			}
			if c != nil {
				t.Errorf("Verify returned claims with an error")
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("error %q does not wrap ErrInvalidToken", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %q does not wrap %q", err, tt.wantIs)
			}
			if tt.wantIs != ErrExpired && errors.Is(err, ErrExpired) {
				t.Errorf("error %q wraps ErrExpired", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestLeeway(t *testing.T) {
	t.Parallel()
	expiredBy10s := with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = numeric(now.Add(-10 * time.Second)) })
	early10s := with(func(c *Claims) { c.NotBefore = numeric(now.Add(10 * time.Second)) })
	tests := []struct {
		name   string
		claims Claims
		leeway time.Duration
		want   error
	}{
		{"expired within leeway", expiredBy10s, 30 * time.Second, nil},
		{"expired beyond leeway", expiredBy10s, 5 * time.Second, ErrExpired},
		{"expired, no leeway", expiredBy10s, 0, ErrExpired},
		{"early within leeway", early10s, 30 * time.Second, nil},
		{"early beyond leeway", early10s, 5 * time.Second, ErrNotYetValid},
		{"early, no leeway", early10s, 0, ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, VerifierConfig{Secret: secret, Leeway: tt.leeway})
			_, err := v.Verify(rawSign(t, jwt.SigningMethodHS256, secret, tt.claims))
			if tt.want == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifierUsesNow(t *testing.T) {
	t.Parallel()
	tok := mustMintHS(t, validClaims()) // valid from now-1m to now+1h
	tests := []struct {
		at   time.Time
		want error
	}{
		{now, nil},
		{now.Add(59 * time.Minute), nil},
		{now.Add(time.Hour), ErrExpired},
		{now.Add(-2 * time.Minute), ErrNotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.at.String(), func(t *testing.T) {
			t.Parallel()
			v := mustVerifier(t, VerifierConfig{Secret: secret, Now: func() time.Time { return tt.at }})
			if _, err := v.Verify(tok); !errors.Is(err, tt.want) && (tt.want != nil || err != nil) {
				t.Fatalf("Verify at %v: %v, want %v", tt.at, err, tt.want)
			}
		})
	}
}

func TestNewVerifier(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cfg      VerifierConfig
		wantAlgs string
		wantErr  string
	}{
		{"secret", VerifierConfig{Secret: secret}, "HS256", ""},
		{"key", VerifierConfig{PublicKeys: []ed25519.PublicKey{pub}}, "EdDSA", ""},
		{"both", VerifierConfig{Secret: secret, PublicKeys: []ed25519.PublicKey{pub, otherPub}}, "HS256,EdDSA", ""},
		{"nothing", VerifierConfig{}, "", "needs a secret or at least one public key"},
		{"empty key list", VerifierConfig{PublicKeys: []ed25519.PublicKey{}}, "", "needs a secret"},
		{"short secret", VerifierConfig{Secret: []byte("short")}, "", "at least 32"},
		{"short key", VerifierConfig{PublicKeys: []ed25519.PublicKey{pub[:31]}}, "", "32"},
		{"negative leeway", VerifierConfig{Secret: secret, Leeway: -time.Second}, "", "negative leeway"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewVerifier error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewVerifier: %v", err)
			}
			if got := strings.Join(v.Algorithms(), ","); got != tt.wantAlgs {
				t.Errorf("Algorithms() = %s, want %s", got, tt.wantAlgs)
			}
		})
	}
}

func TestVerifierCopiesKeys(t *testing.T) {
	t.Parallel()
	s := bytes.Clone(secret)
	v := mustVerifier(t, VerifierConfig{Secret: s})
	s[0] ^= 0xff
	if _, err := v.Verify(mustMintHS(t, validClaims())); err != nil {
		t.Fatalf("Verify after the caller changed its secret: %v", err)
	}
}

func TestAccessTo(t *testing.T) {
	t.Parallel()
	withWildcard := &Claims{Docs: map[string]string{docA: "read", docB: "write", docC: "bogus", Wildcard: "write"}}
	noWildcard := &Claims{Docs: map[string]string{docA: "read", docB: "write"}}
	readAll := &Claims{Docs: map[string]string{docA: "write", Wildcard: "read"}}
	badWildcard := &Claims{Docs: map[string]string{Wildcard: "owner"}}
	other := string(wire.DocIDFromBytes([]byte("some-other-docum")))
	tests := []struct {
		name   string
		claims *Claims
		doc    string
		want   hub.Access
	}{
		{"explicit read beats wildcard write", withWildcard, docA, hub.AccessRead},
		{"explicit write", withWildcard, docB, hub.AccessWrite},
		{"explicit bogus value beats wildcard", withWildcard, docC, hub.AccessNone},
		{"wildcard write", withWildcard, other, hub.AccessWrite},
		{"explicit write beats wildcard read", readAll, docA, hub.AccessWrite},
		{"wildcard read", readAll, other, hub.AccessRead},
		{"no wildcard, explicit read", noWildcard, docA, hub.AccessRead},
		{"no wildcard, unlisted", noWildcard, other, hub.AccessNone},
		{"bogus wildcard", badWildcard, other, hub.AccessNone},
		{"no docs", &Claims{}, docA, hub.AccessNone},
		{"admin alone grants no document", &Claims{Admin: true}, docA, hub.AccessNone},
		{"nil claims", nil, docA, hub.AccessNone},
		{"empty ID", noWildcard, "", hub.AccessNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.claims.AccessTo(tt.doc); got != tt.want {
				t.Errorf("AccessTo(%q) = %v, want %v", tt.doc, got, tt.want)
			}
		})
	}
}

func TestAccess(t *testing.T) {
	t.Parallel()
	if !(hub.AccessNone < hub.AccessRead && hub.AccessRead < hub.AccessWrite) {
		t.Errorf("Access levels are not ordered hub.AccessNone < hub.AccessRead < Write")
	}
	tests := []struct {
		s      string
		want   hub.Access
		wantOK bool
	}{
		{"read", hub.AccessRead, true}, {"write", hub.AccessWrite, true}, {"none", hub.AccessNone, false},
		{"READ", hub.AccessNone, false}, {"", hub.AccessNone, false}, {" read", hub.AccessNone, false},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			t.Parallel()
			got, ok := ParseAccess(tt.s)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseAccess(%q) = %v, %v", tt.s, got, ok)
			}
			if ok && got.String() != tt.s {
				t.Errorf("String() = %q", got.String())
			}
		})
	}
	if hub.AccessNone.String() != "none" || hub.Access(7).String() != "Access(7)" {
		t.Errorf("String() = %q, %q", hub.AccessNone.String(), hub.Access(7).String())
	}
}

func TestExpiresAt(t *testing.T) {
	t.Parallel()
	c := validClaims()
	if got, ok := c.ExpiresAt(); !ok || !got.Equal(now.Add(time.Hour)) {
		t.Errorf("ExpiresAt() = %v, %v", got, ok)
	}
	c.RegisteredClaims.ExpiresAt = nil
	if _, ok := c.ExpiresAt(); ok {
		t.Errorf("ExpiresAt() ok without exp")
	}
	if _, ok := (*Claims)(nil).ExpiresAt(); ok {
		t.Errorf("nil ExpiresAt() ok")
	}
}

func TestMintRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mint    func() (string, error)
		wantErr string
	}{
		{"short secret", func() (string, error) { return MintHS256([]byte("short"), validClaims()) }, "at least 32"},
		{"no exp (HS256)", func() (string, error) {
			return MintHS256(secret, with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = nil }))
		}, `no "exp"`},
		{"no exp (EdDSA)", func() (string, error) {
			return MintEdDSA(priv, with(func(c *Claims) { c.RegisteredClaims.ExpiresAt = nil }))
		}, `no "exp"`},
		{"bad access", func() (string, error) {
			return MintHS256(secret, with(func(c *Claims) { c.Docs[docB] = "rw" }))
		}, `must be "read" or "write"`},
		{"bad doc ID", func() (string, error) {
			return MintEdDSA(priv, with(func(c *Claims) { c.Docs["0OIl"] = "read" }))
		}, "invalid document ID"},
		{"bad private key", func() (string, error) { return MintEdDSA(priv[:32], validClaims()) }, "64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := tt.mint()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("mint = %q, %v; want error %q", tok, err, tt.wantErr)
			}
		})
	}
}

func TestNewJTI(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		j := NewJTI()
		if len(j) != 22 {
			t.Fatalf("NewJTI() = %q: %d characters, want 22", j, len(j))
		}
		b, err := base64.RawURLEncoding.DecodeString(j)
		if err != nil || len(b) != 16 {
			t.Fatalf("NewJTI() = %q: decodes to %d bytes, %v", j, len(b), err)
		}
		if seen[j] {
			t.Fatalf("NewJTI() repeated %q", j)
		}
		seen[j] = true
	}
}

// TestDocumentedExample checks the example payload in the package
// documentation (and the README) is a valid token payload.
func TestDocumentedExample(t *testing.T) {
	t.Parallel()
	const payload = `{
	  "docs": {
	    "4NMNnkMhL8jXrdJ9jamS58PAVdXu": "write",
	    "*": "read"
	  },
	  "sub": "alice",
	  "jti": "q2P0vKq3kR9y6x8t1Qm0Dg",
	  "iat": 1767225600,
	  "exp": 1767229200
	}`
	var m jwt.MapClaims
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1767225600+1800, 0)
	for _, tok := range []string{rawSign(t, jwt.SigningMethodHS256, secret, m), rawSign(t, jwt.SigningMethodEdDSA, priv, m)} {
		v := mustVerifier(t, VerifierConfig{Secret: secret, PublicKeys: []ed25519.PublicKey{pub}, Now: func() time.Time { return at }})
		c, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		other := string(wire.NewDocID())
		if c.AccessTo("4NMNnkMhL8jXrdJ9jamS58PAVdXu") != hub.AccessWrite || c.AccessTo(other) != hub.AccessRead || c.Admin || c.Subject != "alice" {
			t.Errorf("claims = %+v", c)
		}
	}
}
