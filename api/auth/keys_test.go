package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
)

func pemBlock(t *testing.T, typ string, der []byte) string {
	t.Helper()
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func pkixPEM(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PUBLIC KEY", der)
}

func pkcs8PEM(t *testing.T, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PRIVATE KEY", der)
}

func TestParseEd25519PublicKey(t *testing.T) {
	t.Parallel()
	pubPEM := pkixPEM(t, pub)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	tests := []struct {
		name    string
		in      func(t *testing.T) string
		wantErr string
	}{
		{"PEM", func(*testing.T) string { return pubPEM }, ""},
		{"PEM with surrounding space", func(*testing.T) string { return "\n  " + pubPEM + "\n\n" }, ""},
		{"PEM with literal \\n", func(*testing.T) string { return strings.ReplaceAll(strings.TrimSpace(pubPEM), "\n", `\n`) }, ""},
		{"PEM after a private key", func(t *testing.T) string { return pkcs8PEM(t, priv) + pubPEM }, ""},
		{"base64 std", func(*testing.T) string { return base64.StdEncoding.EncodeToString(pub) }, ""},
		{"base64 raw url", func(*testing.T) string { return base64.RawURLEncoding.EncodeToString(pub) }, ""},
		{"base64 with newline", func(*testing.T) string { return base64.StdEncoding.EncodeToString(pub) + "\n" }, ""},
		{"base64 of DER", func(*testing.T) string { return base64.StdEncoding.EncodeToString(der) }, ""},
		{"empty", func(*testing.T) string { return " " }, "empty"},
		{"not base64", func(*testing.T) string { return "this is not a key!" }, "neither PEM nor base64"},
		{"base64 of 31 bytes", func(*testing.T) string { return base64.StdEncoding.EncodeToString(pub[:31]) }, "parsing public key"},
		{"private key PEM only", func(t *testing.T) string { return pkcs8PEM(t, priv) }, `no PEM "PUBLIC KEY" block found (found PRIVATE KEY)`},
		{"truncated PEM", func(*testing.T) string { return pubPEM[:30] }, `no PEM "PUBLIC KEY" block`},
		{"RSA public key", func(t *testing.T) string { return pkixPEM(t, &rsaKey().PublicKey) }, "not Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseEd25519PublicKey(tt.in(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEd25519PublicKey = %x, %v; want error %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEd25519PublicKey: %v", err)
			}
			if !bytes.Equal(got, pub) {
				t.Fatalf("key = %x, want %x", got, pub)
			}
		})
	}
}

func TestParseEd25519PrivateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      func(t *testing.T) string
		wantErr string
	}{
		{"PKCS#8 PEM", func(t *testing.T) string { return pkcs8PEM(t, priv) }, ""},
		{"followed by the public key", func(t *testing.T) string { return pkcs8PEM(t, priv) + pkixPEM(t, pub) }, ""},
		{"public key only", func(t *testing.T) string { return pkixPEM(t, pub) }, `no PEM "PRIVATE KEY" block found (found PUBLIC KEY)`},
		{"no PEM", func(*testing.T) string { return "hello" }, `no PEM "PRIVATE KEY" block found`},
		{"garbage in block", func(t *testing.T) string { return pemBlock(t, "PRIVATE KEY", []byte("junk")) }, "parsing private key"},
		{"RSA key", func(t *testing.T) string { return pkcs8PEM(t, rsaKey()) }, "not Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseEd25519PrivateKey(tt.in(t))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseEd25519PrivateKey error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseEd25519PrivateKey: %v", err)
			}
			if !got.Equal(priv) {
				t.Fatalf("wrong key")
			}
			// And it mints tokens the matching public key verifies.
			v := mustVerifier(t, VerifierConfig{PublicKeys: []ed25519.PublicKey{pub}})
			if _, err := v.Verify(mustMintEd(t, got, validClaims())); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}
