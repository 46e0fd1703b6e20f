package main

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Fixed inputs, so that the tests are deterministic.
var (
	now             = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fixedNow        = func() time.Time { return now }
	secret          = []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	priv            = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub             = priv.Public().(ed25519.PublicKey)
	docA            = string(wire.DocIDFromBytes([]byte("document-A-16byt")))
	docB            = string(wire.DocIDFromBytes([]byte("document-B-16byt")))
	docC            = string(wire.DocIDFromBytes([]byte("document-C-16byt")))
	privPEM, pubPEM = func() (string, string) {
		a, b, err := auth.MarshalEd25519(priv, pub)
		if err != nil {
			panic(err)
		}
		return a, b
	}()
)

func mustVerifier(t *testing.T, cfg auth.VerifierConfig) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// runToken runs the command at the fixed time now.
func runToken(t *testing.T, getenv func(string) string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = tokenCommand(args, getenv, &out, &errOut, fixedNow)
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunTokenCommand(t *testing.T) {
	t.Parallel()
	keyFile := writeFile(t, "key.pem", privPEM)
	withSecret := env("TANDEM_TOKEN_SECRET", string(secret))
	tests := []struct {
		name       string
		getenv     func(string) string
		args       []string
		cfg        auth.VerifierConfig
		wantDocs   map[string]string
		wantAdmin  bool
		wantSub    string
		wantJTI    string // "" means: random, 22 characters
		wantTTL    time.Duration
		wantStderr string
	}{
		{
			name: "secret from environment", getenv: withSecret,
			args:     []string{"--doc", docA + "=write", "--doc", docB + "=read", "--sub", "alice", "--jti", "token-1"},
			cfg:      auth.VerifierConfig{Secret: secret},
			wantDocs: map[string]string{docA: "write", docB: "read"}, wantSub: "alice", wantJTI: "token-1", wantTTL: time.Hour,
		},
		{
			name: "secret flag, single dash, wildcard", getenv: env(),
			args:     []string{"-secret", string(secret), "-doc", "*=write", "-doc", docA + "=read", "-ttl", "24h"},
			cfg:      auth.VerifierConfig{Secret: secret},
			wantDocs: map[string]string{auth.Wildcard: "write", docA: "read"}, wantTTL: 24 * time.Hour,
			wantStderr: "prefer TANDEM_TOKEN_SECRET",
		},
		{
			name: "secret flag beats environment", getenv: env("TANDEM_TOKEN_SECRET", "an environment secret, wrong one!"),
			args:     []string{"--secret", string(secret), "--admin"},
			cfg:      auth.VerifierConfig{Secret: secret},
			wantDocs: nil, wantAdmin: true, wantTTL: time.Hour, wantStderr: "warning",
		},
		{
			name: "automerge URL normalized, repeated doc", getenv: withSecret,
			args:     []string{"--doc", "automerge:" + docA + "=read", "--doc", docA + "=read", "--ttl", "90s"},
			cfg:      auth.VerifierConfig{Secret: secret},
			wantDocs: map[string]string{docA: "read"}, wantTTL: 90 * time.Second,
		},
		{
			name: "EdDSA private key file (environment secret unused)", getenv: withSecret,
			args:     []string{"--private-key-file", keyFile, "--doc", docC + "=write", "--admin", "--sub", "ci"},
			cfg:      auth.VerifierConfig{PublicKeys: []ed25519.PublicKey{pub}},
			wantDocs: map[string]string{docC: "write"}, wantAdmin: true, wantSub: "ci", wantTTL: time.Hour,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runToken(t, tt.getenv, tt.args...)
			if err != nil {
				t.Fatalf("run: %v (stderr %q)", err, stderr)
			}
			if tt.wantStderr == "" && stderr != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr = %q, want %q", stderr, tt.wantStderr)
			}
			tok, ok := strings.CutSuffix(stdout, "\n")
			if !ok || strings.ContainsAny(tok, " \n") || strings.Count(tok, ".") != 2 {
				t.Fatalf("stdout = %q, want one token and a newline", stdout)
			}
			c, err := mustVerifier(t, tt.cfg).Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if len(c.Docs) != len(tt.wantDocs) {
				t.Errorf("Docs = %v, want %v", c.Docs, tt.wantDocs)
			}
			for k, v := range tt.wantDocs {
				if c.Docs[k] != v {
					t.Errorf("Docs = %v, want %v", c.Docs, tt.wantDocs)
				}
			}
			if c.Admin != tt.wantAdmin || c.Subject != tt.wantSub {
				t.Errorf("Admin, Subject = %v, %q; want %v, %q", c.Admin, c.Subject, tt.wantAdmin, tt.wantSub)
			}
			if tt.wantJTI != "" && c.ID != tt.wantJTI || tt.wantJTI == "" && len(c.ID) != 22 {
				t.Errorf("jti = %q, want %q", c.ID, tt.wantJTI)
			}
			if c.IssuedAt == nil || !c.IssuedAt.Equal(now) {
				t.Errorf("iat = %v, want %v", c.IssuedAt, now)
			}
			if exp, ok := c.ExpiresAt(); !ok || !exp.Equal(now.Add(tt.wantTTL)) {
				t.Errorf("exp = %v, want %v", exp, now.Add(tt.wantTTL))
			}
			if c.NotBefore != nil {
				t.Errorf("nbf = %v, want none", c.NotBefore)
			}
		})
	}
}

// TestTokenCommandRealClock mints with the real clock, as main does.
func TestTokenCommandRealClock(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	err := tokenCommand([]string{"--doc", docA + "=read", "--ttl", "5m"}, env("TANDEM_TOKEN_SECRET", string(secret)), &out, &errOut, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: secret}) // the real clock
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.AccessTo(docA) != hub.AccessRead || c.AccessTo(docB) != hub.AccessNone {
		t.Errorf("claims = %+v", c)
	}
}

func TestRunTokenCommandGenEd25519(t *testing.T) {
	t.Parallel()
	stdout, stderr, err := runToken(t, env(), "--gen-ed25519")
	if err != nil || stderr != "" {
		t.Fatalf("run: %v, stderr %q", err, stderr)
	}
	if !strings.HasPrefix(stdout, "-----BEGIN PRIVATE KEY-----\n") || !strings.Contains(stdout, "-----BEGIN PUBLIC KEY-----\n") {
		t.Fatalf("stdout = %q", stdout)
	}
	k, err := auth.ParseEd25519PrivateKey(stdout)
	if err != nil {
		t.Fatalf("ParseEd25519PrivateKey: %v", err)
	}
	p, err := auth.ParseEd25519PublicKey(stdout)
	if err != nil {
		t.Fatalf("ParseEd25519PublicKey: %v", err)
	}
	if !p.Equal(k.Public()) {
		t.Fatalf("public key does not match private key")
	}
	// The whole output serves as --private-key-file.
	tok, _, err := runToken(t, env(), "--private-key-file", writeFile(t, "gen.pem", stdout), "--doc", "*=read")
	if err != nil {
		t.Fatalf("minting with the generated key: %v", err)
	}
	if _, err := mustVerifier(t, auth.VerifierConfig{PublicKeys: []ed25519.PublicKey{p}}).Verify(strings.TrimSpace(tok)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// Two runs make two keys.
	again, _, _ := runToken(t, env(), "--gen-ed25519")
	if again == stdout {
		t.Fatalf("--gen-ed25519 printed the same key twice")
	}
}

func TestRunTokenCommandErrors(t *testing.T) {
	t.Parallel()
	withSecret := env("TANDEM_TOKEN_SECRET", string(secret))
	pubOnly := writeFile(t, "pub.pem", pubPEM)
	keyFile := writeFile(t, "key.pem", privPEM)
	tests := []struct {
		name    string
		getenv  func(string) string
		args    []string
		wantErr string
	}{
		{"no key", env(), []string{"--doc", "*=read"}, "no signing key: set TANDEM_TOKEN_SECRET, or pass --secret or --private-key-file"},
		{"empty secret flag", env(), []string{"--secret", "", "--doc", "*=read"}, "no signing key"},
		{"short secret", env("TANDEM_TOKEN_SECRET", "short"), []string{"--doc", "*=read"}, "at least 32"},
		{"both keys", env(), []string{"--secret", string(secret), "--private-key-file", keyFile, "--admin"}, "either --secret or --private-key-file"},
		{"missing key file", env(), []string{"--private-key-file", filepath.Join(t.TempDir(), "nope.pem"), "--admin"}, "reading private key"},
		{"public key as key file", env(), []string{"--private-key-file", pubOnly, "--admin"}, `no PEM "PRIVATE KEY" block`},
		{"doc without =", withSecret, []string{"--doc", docA}, "is not ID=read or ID=write"},
		{"doc without ID", withSecret, []string{"--doc", "=read"}, "is not ID=read or ID=write"},
		{"bad access", withSecret, []string{"--doc", docA + "=admin"}, `access must be "read" or "write", not "admin"`},
		{"empty access", withSecret, []string{"--doc", docA + "="}, `access must be "read" or "write"`},
		{"access case", withSecret, []string{"--doc", "*=Write"}, `access must be "read" or "write"`},
		{"bad doc ID", withSecret, []string{"--doc", "my-doc=read"}, "invalid document ID"},
		{"conflicting doc", withSecret, []string{"--doc", docA + "=read", "--doc", docA + "=write"}, "already given"},
		{"grants nothing", withSecret, []string{"--sub", "x"}, "would grant nothing"},
		{"zero ttl", withSecret, []string{"--admin", "--ttl", "0s"}, "--ttl must be positive"},
		{"negative ttl", withSecret, []string{"--admin", "--ttl", "-1h"}, "--ttl must be positive"},
		{"bad ttl", withSecret, []string{"--admin", "--ttl", "forever"}, "invalid value"},
		{"unknown flag", withSecret, []string{"--admin", "--docs", "*=read"}, "flag provided but not defined: -docs"},
		{"positional argument", withSecret, []string{"--admin", "extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runToken(t, tt.getenv, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "tandem token: ") {
				t.Errorf("error %q lacks the command prefix", err)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
			if strings.Contains(stderr, "Usage") {
				t.Errorf("stderr = %q, want no usage", stderr)
			}
		})
	}
}

func TestRunTokenCommandHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runToken(t, env(), arg)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("error = %v, want flag.ErrHelp", err)
			}
			if stdout != "" {
				t.Errorf("stdout = %q", stdout)
			}
			for _, want := range []string{"Usage: tandem token", "-doc ID=read|write", "-private-key-file", "-gen-ed25519", "TANDEM_TOKEN_SECRET"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("usage lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
}
