package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParseEd25519PublicKey parses an Ed25519 public key (for EdDSA tokens) given
// as either
//
//   - PEM text with a "PUBLIC KEY" block (PKIX, as `openssl pkey -pubout` and
//     `tandem token --gen-ed25519` write it); other blocks in the text are
//     skipped, and literal `\n` sequences (PEM squeezed onto one line for an
//     environment variable) are read as newlines; or
//   - base64 (standard or URL alphabet, padded or not) of the 32 raw key
//     bytes, or of the DER PKIX structure (a PEM body on one line).
func ParseEd25519PublicKey(pemOrBase64 string) (ed25519.PublicKey, error) {
	s := strings.TrimSpace(pemOrBase64)
	if s == "" {
		return nil, errors.New("auth: empty public key")
	}
	var der []byte
	if strings.Contains(s, "-----BEGIN") {
		b, err := findPEM(s, "PUBLIC KEY")
		if err != nil {
			return nil, err
		}
		der = b.Bytes
	} else {
		raw, err := decodeBase64(s)
		if err != nil {
			return nil, errors.New("auth: public key is neither PEM nor base64")
		}
		if len(raw) == ed25519.PublicKeySize {
			return ed25519.PublicKey(raw), nil
		}
		der = raw
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("auth: parsing public key: %w (want an Ed25519 PUBLIC KEY PEM, or base64 of its 32 bytes)", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("auth: public key is %T, not Ed25519", k)
	}
	return pub, nil
}

// ParseEd25519PrivateKey parses an Ed25519 private key (for minting EdDSA
// tokens) from PEM text with a PKCS#8 "PRIVATE KEY" block, as
// `openssl genpkey -algorithm ed25519` and `tandem token --gen-ed25519` write
// it. Other blocks in the text (such as the public key) are skipped.
func ParseEd25519PrivateKey(pemText string) (ed25519.PrivateKey, error) {
	b, err := findPEM(pemText, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("auth: parsing private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("auth: private key is %T, not Ed25519", k)
	}
	return priv, nil
}

// findPEM returns the first PEM block of type typ in s.
func findPEM(s, typ string) (*pem.Block, error) {
	if !strings.Contains(s, "\n") && strings.Contains(s, `\n`) {
		s = strings.ReplaceAll(s, `\n`, "\n")
	}
	rest := []byte(s)
	var seen []string
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == typ {
			return b, nil
		}
		seen = append(seen, b.Type)
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("auth: no PEM %q block found", typ)
	}
	return nil, fmt.Errorf("auth: no PEM %q block found (found %s)", typ, strings.Join(seen, ", "))
}

func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// MarshalEd25519 encodes an Ed25519 key pair as PEM: the private key as
// PKCS#8 ("PRIVATE KEY", what ParseEd25519PrivateKey reads) and the public
// key as PKIX ("PUBLIC KEY", what ParseEd25519PublicKey reads).
func MarshalEd25519(priv ed25519.PrivateKey, pub ed25519.PublicKey) (privPEM, pubPEM string, err error) {
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", fmt.Errorf("auth: encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", "", fmt.Errorf("auth: encode public key: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})), nil
}
