package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

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
		return 0, nil, fmt.Errorf("websocket read: %w", err)
	}
	if errors.Is(err, errFrameUnsized) {
		_ = t.c.Close(websocket.StatusInvalidFramePayloadData, "malformed frame: a large frame must be a CBOR map that declares its size")
		return 0, nil, fmt.Errorf("websocket read: %w", err)
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
	if s.draining.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	sess, err := s.session(r)
	if err != nil {
		s.log.Info("websocket refused", "remote", r.RemoteAddr, "err", err)
		s.writeError(w, r, err)
		return
	}
	opts := &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled}
	if len(s.cfg.Access.AllowedOrigins) == 0 {
		// Stock servers accept any origin; see the README's security notes.
		opts.InsecureSkipVerify = true
	} else {
		opts.OriginPatterns = s.cfg.Access.AllowedOrigins
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		s.log.Debug("websocket accept failed", "err", err)
		return
	}
	c.SetReadLimit(s.cfg.MaxFrameBytes)
	// The request context ends when the handler returns; the connection
	// lives on its own context, ended by the hub or the peer.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	s.hub.Serve(ctx, wsTransport{c: c, frames: s.frames}, sess)
}
