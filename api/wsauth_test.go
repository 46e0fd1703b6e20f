package api_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/sync/wire"
)

// refused is what a client whose token was refused saw: the upgrade
// succeeded, then one message and a close.
type refused struct {
	msg    wire.Message
	code   websocket.StatusCode
	reason string
}

// dialRefused connects with url, expects the upgrade to succeed, reads
// the one message that follows and then the close.
func dialRefused(t *testing.T, url string) refused {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("upgrade refused (HTTP %d): %v", status, err)
	}
	defer c.CloseNow()
	typ, frame, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("no message before the close: %v", err)
	}
	if typ != websocket.MessageBinary {
		t.Fatalf("message type %v, want binary", typ)
	}
	m, err := wire.Decode(frame)
	if err != nil {
		t.Fatalf("decode %x: %v", frame, err)
	}
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("after the message: %v, want a close", err)
	}
	return refused{msg: m, code: ce.Code, reason: ce.Reason}
}

// failingRevocations is a store whose revocation list cannot be read.
type failingRevocations struct{ testStore }

func (failingRevocations) TokenRevoked(context.Context, string) (bool, error) {
	return false, errors.New("revocations table unreadable")
}

// TestRefusedTokensCloseWithAReason checks what a WebSocket client whose
// token is refused sees: the upgrade is accepted, then one error message
// says why and the connection is closed with 4401 (missing, invalid or
// expired: get a fresh token) or 4403 (revoked). A refused upgrade would be
// an uncaught exception in the stock Node client.
func TestRefusedTokensCloseWithAReason(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite, api.Config{Access: api.AccessConfig{Verifier: v, AdminKey: testAdminKey}})
	ws := "ws" + strings.TrimPrefix(e.ts.URL, "http")
	mint := func(secret string, exp time.Duration, jti string) string {
		t.Helper()
		tok, err := auth.MintHS256([]byte(secret), auth.Claims{
			Docs: map[string]string{"*": "write"},
			RegisteredClaims: jwt.RegisteredClaims{
				ExpiresAt: jwt.NewNumericDate(time.Now().Add(exp)),
				ID:        jti,
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoked := auth.NewJTI()
	e.withBearer(t, "POST", "/api/v1/tokens/revoke", testAdminKey, []byte(`{"jti": "`+revoked+`"}`)).want(t, http.StatusOK, nil)

	for _, tc := range []struct {
		name, token string
		code        websocket.StatusCode
		reason      string
		message     string // in the error message
	}{
		{"missing", "", 4401, "token required", "token_required"},
		{"malformed", "not.a.jwt", 4401, "invalid token", "malformed"},
		{"wrong signature", mint(testSecret+"-other", time.Hour, ""), 4401, "invalid token", "signature does not verify"},
		{"expired an hour ago", mint(testSecret, -time.Hour, ""), 4401, "token expired", "expired"},
		// Within the verifier's leeway, but a connection cannot start after exp.
		{"expired 2 s ago", mint(testSecret, -2*time.Second, ""), 4401, "token expired", "expired"},
		{"revoked", mint(testSecret, time.Hour, revoked), 4403, "token revoked", "token_revoked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := ws + "/"
			if tc.token != "" {
				url += "?token=" + tc.token
			}
			got := dialRefused(t, url)
			if got.msg.Type != wire.TypeError || !strings.Contains(got.msg.ErrorMessage, tc.message) {
				t.Fatalf("message %+v, want an error mentioning %q", got.msg, tc.message)
			}
			if got.code != tc.code || got.reason != tc.reason {
				t.Fatalf("closed with %d %q, want %d %q", got.code, got.reason, tc.code, tc.reason)
			}
		})
	}
	// None of them joined the hub or opened a room.
	if n := e.hub.Len(); n != 0 {
		t.Fatalf("%d connections in the hub after refusals", n)
	}
	if n := e.rooms.Len(); n != 0 {
		t.Fatalf("%d rooms after refusals", n)
	}
	// A valid token still connects.
	ctx := testCtx(t)
	dialPeer(t, ctx, e.ts.URL+"/?token="+mint(testSecret, time.Hour, auth.NewJTI()), "peer-ok", wire.NewDocID())

	// A server without a token key refuses tokens the same way; a server
	// that cannot read its revocations says try again later (1013).
	noKeys := newEnv(t, openSQLite, api.Config{})
	got := dialRefused(t, "ws"+strings.TrimPrefix(noKeys.ts.URL, "http")+"/?token="+mint(testSecret, time.Hour, ""))
	if got.code != 4401 || got.reason != "tokens not accepted" || !strings.Contains(got.msg.ErrorMessage, "tokens_not_accepted") {
		t.Fatalf("no token key: %+v", got)
	}
	broken := newEnv(t, func(t *testing.T) testStore { return failingRevocations{openSQLite(t)} },
		api.Config{Access: api.AccessConfig{Verifier: v}})
	got = dialRefused(t, "ws"+strings.TrimPrefix(broken.ts.URL, "http")+"/?token="+mint(testSecret, time.Hour, auth.NewJTI()))
	if got.code != websocket.StatusTryAgainLater || !strings.Contains(got.msg.ErrorMessage, "try again later") {
		t.Fatalf("unreadable revocations: %+v", got)
	}
	if strings.Contains(got.msg.ErrorMessage, "unreadable") {
		t.Fatalf("the store's error leaked to the client: %q", got.msg.ErrorMessage)
	}
}

// TestRefusedConnectionEndsOnItsOwn checks that a refused client that
// never answers the close (nor reads) costs the server a bounded time: the
// server ends the connection itself, well before coder/websocket's own 5 s
// close-handshake wait.
func TestRefusedConnectionEndsOnItsOwn(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, openSQLite, api.Config{Access: api.AccessConfig{Verifier: v}})
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(e.ts.URL, "http://"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	start := time.Now()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: tandem\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	if err := conn.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", resp.Status)
	}
	// Read (and never answer) until the server hangs up.
	n, err := io.Copy(io.Discard, br)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("after %d bytes: %v (the server did not end the connection within 15 s)", n, err)
	}
	t.Logf("the server ended the unanswered refusal after %v (%d bytes: error message and close frame)", took, n)
	if took >= 5*time.Second {
		t.Fatalf("the refused connection lasted %v", took)
	}
	if n < 10 {
		t.Fatalf("only %d bytes before the hang-up, want an error message and a close frame", n)
	}
}
