package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/sync/wire"
)

const tokenUsage = `Usage: tandem token [flags]

Mints an access token and prints it on standard output.

  tandem token --doc 4NMNnkMhL8jXrdJ9jamS58PAVdXu=write --sub alice
  tandem token --doc '*=read' --ttl 24h
  tandem token --admin --private-key-file tandem-ed25519.pem
  tandem token --gen-ed25519 > tandem-ed25519.pem

The HS256 secret comes from --secret or TANDEM_TOKEN_SECRET (prefer the
environment: command lines are visible to other users). With
--private-key-file the token is signed with EdDSA instead.

Flags:
`

// docFlag collects repeated --doc ID=read|write flags.
type docFlag map[string]string

func (d docFlag) String() string {
	parts := make([]string, 0, len(d))
	for k, v := range d {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (d docFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not ID=read or ID=write", s)
	}
	if _, ok := auth.ParseAccess(v); !ok {
		return fmt.Errorf("%q: access must be \"read\" or \"write\", not %q", s, v)
	}
	if k != auth.Wildcard {
		id, err := wire.ParseDocID(k) // accepts an automerge: URL too
		if err != nil {
			return fmt.Errorf("%q: %w", s, err)
		}
		k = string(id)
	}
	if old, dup := d[k]; dup && old != v {
		return fmt.Errorf("%q: document %s is already given %q", s, k, old)
	}
	d[k] = v
	return nil
}

// tokenCommand implements `tandem token`: it mints an access token from
// the flags in args (the arguments after "token") and writes it, and a
// newline, to stdout, and nothing else. getenv supplies TANDEM_TOKEN_SECRET.
//
// Flags:
//
//	--secret S              HS256 secret (default: $TANDEM_TOKEN_SECRET)
//	--private-key-file F    sign with EdDSA using the PKCS#8 PEM key in F instead
//	--doc ID=read|write     grant access to a document (repeatable; ID may be
//	                        an automerge: URL, or '*' for all documents)
//	--admin                 make it an admin token (REST API)
//	--ttl D                 lifetime (default 1h); sets exp, and iat to now
//	--sub NAME              subject, logged as the principal
//	--jti ID                token ID (default: random, see auth.NewJTI)
//	--gen-ed25519           print a new Ed25519 private key PEM and its public
//	                        key PEM, then exit (for development)
//
// A token must grant something (--doc or --admin). Errors, flag errors
// included, are returned (prefixed "tandem token: "), not printed; the caller
// prints them. Only two things go to stderr: the usage, for -h/--help (which
// then returns flag.ErrHelp), and a warning when the secret is given on the
// command line.
func tokenCommand(args []string, getenv func(string) string, stdout, stderr io.Writer, now func() time.Time) error {
	var (
		fs       = flag.NewFlagSet("tandem token", flag.ContinueOnError)
		flagOut  bytes.Buffer
		docs     = docFlag{}
		secret   = fs.String("secret", "", "HS256 signing secret (default: $TANDEM_TOKEN_SECRET)")
		keyFile  = fs.String("private-key-file", "", "sign with EdDSA using this Ed25519 PKCS#8 PEM private key")
		admin    = fs.Bool("admin", false, "grant admin access to the REST API")
		ttl      = fs.Duration("ttl", time.Hour, "how long the token is valid")
		sub      = fs.String("sub", "", "subject (who the token is for), logged as the principal")
		jti      = fs.String("jti", "", "token ID, for revocation (default: random)")
		genKey   = fs.Bool("gen-ed25519", false, "print a new Ed25519 private key and public key (PEM), then exit")
		explicit = map[string]bool{}
	)
	fs.Var(docs, "doc", "grant `ID=read|write` (repeatable; ID may be '*' for all documents)")
	fs.SetOutput(&flagOut)
	fs.Usage = func() {
		fmt.Fprint(&flagOut, tokenUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, _ = io.Copy(stderr, &flagOut)
			return err
		}
		return fmt.Errorf("tandem token: %w (see tandem token -h)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tandem token: unexpected argument %q (see tandem token -h)", fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	if *genKey {
		return genEd25519(stdout)
	}

	var sign func(auth.Claims) (string, error)
	switch {
	case explicit["private-key-file"] && explicit["secret"]:
		return errors.New("tandem token: give either --secret or --private-key-file, not both")
	case *keyFile != "":
		pemText, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("tandem token: reading private key: %w", err)
		}
		key, err := auth.ParseEd25519PrivateKey(string(pemText))
		if err != nil {
			return fmt.Errorf("tandem token: %s: %w", *keyFile, err)
		}
		sign = func(c auth.Claims) (string, error) { return auth.MintEdDSA(key, c) }
	default:
		s := *secret
		if explicit["secret"] {
			fmt.Fprintln(stderr, "tandem token: warning: a secret on the command line is visible to other users; prefer TANDEM_TOKEN_SECRET")
		} else {
			s = getenv("TANDEM_TOKEN_SECRET")
		}
		if s == "" {
			return errors.New("tandem token: no signing key: set TANDEM_TOKEN_SECRET, or pass --secret or --private-key-file")
		}
		sign = func(c auth.Claims) (string, error) { return auth.MintHS256([]byte(s), c) }
	}

	if *ttl <= 0 {
		return fmt.Errorf("tandem token: --ttl must be positive, not %v", *ttl)
	}
	if len(docs) == 0 && !*admin {
		return errors.New("tandem token: the token would grant nothing: give --doc ID=read|write or --admin")
	}
	id := *jti
	if id == "" {
		id = auth.NewJTI()
	}
	t := now()
	c := auth.Claims{
		Admin: *admin,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   *sub,
			ID:        id,
			IssuedAt:  jwt.NewNumericDate(t),
			ExpiresAt: jwt.NewNumericDate(t.Add(*ttl)),
		},
	}
	if len(docs) > 0 {
		c.Docs = docs
	}
	tok, err := sign(c)
	if err != nil {
		return fmt.Errorf("tandem token: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

// genEd25519 writes a new Ed25519 key pair as PEM: the PKCS#8 private key,
// then the PKIX public key.
func genEd25519(w io.Writer) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("tandem token: generating key: %w", err)
	}
	privPEM, pubPEM, err := auth.MarshalEd25519(priv, pub)
	if err != nil {
		return fmt.Errorf("tandem token: %w", err)
	}
	_, err = io.WriteString(w, privPEM+pubPEM)
	return err
}
