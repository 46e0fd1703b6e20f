package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/wire"
)

// wsTransport adapts a coder/websocket connection to hub.Transport.
type wsTransport struct {
	c      *websocket.Conn
	frames *frameReader
}

func (t wsTransport) Read(ctx context.Context) (hub.FrameKind, []byte, error) {
	typ, r, err := t.c.Reader(ctx)
	var data []byte
	if err == nil {
		data, err = t.frames.read(r)
	}
	if errors.Is(err, errFrameTooBig) {
		// As coder/websocket does for a frame it finds over the limit.
		_ = t.c.Close(websocket.StatusMessageTooBig, "frame too large")
		return 0, nil, fmt.Errorf("websocket read: %w: %w", hub.ErrFrameRefused, err)
	}
	if errors.Is(err, errFrameUnsized) {
		_ = t.c.Close(websocket.StatusInvalidFramePayloadData, "malformed frame: a large frame must be a CBOR map that declares its size")
		return 0, nil, fmt.Errorf("websocket read: %w: %w", hub.ErrFrameRefused, err)
	}
	if err != nil && strings.Contains(err.Error(), "read limited at") {
		// coder/websocket found the frame over its read limit (1009).
		return 0, nil, fmt.Errorf("websocket read: %w: %w", hub.ErrFrameRefused, err)
	}
	if err != nil {
		if websocket.CloseStatus(err) != -1 || errors.Is(err, context.Canceled) {
			return 0, nil, fmt.Errorf("%w: %v", hub.ErrTransportClosed, err)
		}
		return 0, nil, fmt.Errorf("websocket read: %w", err)
	}
	if typ == websocket.MessageText {
		return hub.FrameText, data, nil
	}
	return hub.FrameBinary, data, nil
}

func (t wsTransport) Write(ctx context.Context, frame []byte) error {
	if err := t.c.Write(ctx, websocket.MessageBinary, frame); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	return nil
}

func (t wsTransport) Ping(ctx context.Context) error {
	if err := t.c.Ping(ctx); err != nil {
		return fmt.Errorf("websocket ping: %w", err)
	}
	return nil
}

func (t wsTransport) Close(code wire.CloseCode, reason string) error {
	if len(reason) > 120 { // a close frame's reason must fit in 123 bytes
		reason = reason[:120]
	}
	return t.c.Close(websocket.StatusCode(code), reason)
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return headerHas(r.Header, "Connection", "upgrade") && headerHas(r.Header, "Upgrade", "websocket")
}

// serveWebSocket accepts an automerge-repo client on any path, as the
// official server does, and serves it until it disconnects.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	if len(s.cfg.Access.AllowedOrigins) == 0 {
		// Stock servers accept any origin; see the README's security notes.
		opts.InsecureSkipVerify = true
	} else {
		opts.OriginPatterns = s.cfg.Access.AllowedOrigins
	}
	if s.draining.Load() {
		// Not HTTP 503: a stock Node client would die of it during a
		// rolling restart. 1001 tells it to come back (to another node).
		s.refuseWebSocket(w, r, opts, errDraining)
		return
	}
	sess, err := s.session(r)
	if err != nil {
		s.refuseWebSocket(w, r, opts, err)
		return
	}
	c, err := websocket.Accept(compactHijacker{w}, r, opts)
	if err != nil {
		s.log.Debug("websocket accept failed", "err", err)
		return
	}
	c.SetReadLimit(s.cfg.MaxFrameBytes)
	// The handler returns now, so that net/http lets go of what it held for
	// the request (its connection state, read buffer, headers, the router's
	// context and a deep stack); the connection lives on a goroutine of its
	// own, ended by the hub or the peer.
	go s.hub.Serve(context.Background(), wsTransport{c: c, frames: s.frames}, sess)
}

// Buffer sizes of a WebSocket connection's own reader and writer (net/http
// hands a hijacker 4 KiB of each). Reads of a frame's payload at least this
// long, and writes of one, bypass the buffers, so small ones cost little
// and an idle connection holds 1.5 KiB instead of 8.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 1024
)

// compactHijacker hands coder/websocket the hijacked connection with small
// buffers of its own instead of net/http's (see wsReadBuffer), keeping
// whatever the client sent after its upgrade request.
type compactHijacker struct {
	http.ResponseWriter
}

func (h compactHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Writer.Flush(); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("hijack: flush: %w", err)
		}
	}
	br := bufio.NewReaderSize(conn, wsReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes net/http read ahead (its background read takes one)
		// must be buffered in the reader handed on: coder/websocket
		// keeps what is buffered and reads the rest from conn.
		early, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), conn), max(wsReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			_ = conn.Close()
			return nil, nil, fmt.Errorf("hijack: buffered bytes: %w", err)
		}
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}

// refusalTimeout bounds all of a refused connection: the upgrade, the
// error message, and the close handshake.
const refusalTimeout = 2 * time.Second

// refusalReadLimit bounds a frame a refused client may send before it
// answers the close (a stock client sends its join, a few hundred bytes).
const refusalReadLimit = 4 << 10

// refusal is what a WebSocket client whose token is refused is told: the
// close code and its short reason.
// errDraining turns away connections that arrive while the server shuts
// down.
var errDraining = errors.New("the server is shutting down: reconnect")

func refusal(err error) (wire.CloseCode, string) {
	var ae *apiError
	switch {
	case errors.Is(err, errDraining):
		return wire.CloseGoingAway, "server shutting down"
	case errors.Is(err, errTokenRevoked):
		return wire.CloseRevoked, "token revoked"
	case errors.Is(err, errTokenExpired):
		return wire.CloseTokenExpired, "token expired"
	case errors.Is(err, errTokenRequired):
		return wire.CloseTokenExpired, "token required"
	case errors.Is(err, errNoTokens):
		return wire.CloseTokenExpired, "tokens not accepted"
	case errors.As(err, &ae):
		return wire.CloseTokenExpired, "invalid token"
	}
	return wire.CloseTryAgainLater, "cannot check the token now"
}

// refuseWebSocket turns a client away whose token was refused (err from
// session), or that arrived while the server drains (errDraining: 1001): it accepts the upgrade, sends one error message saying why, and
// closes with 4401 (no token, or an invalid or expired one: get a fresh one),
// 4403 (revoked: do not come back with it) or, when the revocation list
// could not be read, 1013. A refused upgrade (HTTP 401) would be an uncaught
// exception in the stock Node client and a bare 1006 in a browser; this way
// both keep running and can show the reason. The connection joins no room
// and has no read loop: all of it, the close handshake included, ends
// within refusalTimeout.
func (s *Server) refuseWebSocket(w http.ResponseWriter, r *http.Request, opts *websocket.AcceptOptions, err error) {
	code, reason := refusal(err)
	message := err.Error()
	if code == wire.CloseGoingAway {
		s.log.Debug("websocket refused: draining", "remote", r.RemoteAddr)
	} else if code == wire.CloseTryAgainLater {
		s.log.Error("websocket refused: cannot check the token", "remote", r.RemoteAddr, "err", err)
		message = "the server could not check the access token: try again later"
	} else {
		s.log.Info("websocket refused", "remote", r.RemoteAddr, "code", int(code), "err", err)
	}
	deadline := time.Now().Add(refusalTimeout)
	c, err := websocket.Accept(deadlineHijacker{ResponseWriter: w, deadline: deadline}, r, opts)
	if err != nil {
		s.log.Debug("websocket accept failed", "err", err)
		return
	}
	c.SetReadLimit(refusalReadLimit)
	frame, err := wire.Encode(wire.Message{Type: wire.TypeError, ErrorMessage: message})
	if err == nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = c.Write(ctx, websocket.MessageBinary, frame)
		cancel()
	}
	if err != nil {
		s.log.Debug("refused websocket: error message not sent", "err", err)
		_ = c.CloseNow()
		return
	}
	_ = c.Close(websocket.StatusCode(code), reason)
}

// deadlineHijacker hands coder/websocket the connection with a deadline
// set on it, since net/http clears a connection's deadlines when it is
// hijacked.
type deadlineHijacker struct {
	http.ResponseWriter
	deadline time.Time
}

func (d deadlineHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(d.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("hijack: %w", err)
	}
	if err := conn.SetDeadline(d.deadline); err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("hijack: set deadline: %w", err)
	}
	return conn, brw, nil
}
