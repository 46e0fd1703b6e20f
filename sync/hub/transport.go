// Package hub speaks the automerge-repo protocol with connected peers: the
// join handshake, routing of sync and request messages to rooms, the
// ephemeral relay, and one bounded outbound queue with its own writer per
// connection. It knows nothing of WebSockets: api/ adapts a WebSocket to
// Transport.
package hub

import (
	"context"
	"errors"

	"github.com/tandem-sync/tandem/sync/wire"
)

// FrameKind tells binary frames from text frames.
type FrameKind int

// Frame kinds.
const (
	FrameBinary FrameKind = iota
	FrameText
)

// ErrTransportClosed is returned by Transport.Read when the connection has
// ended normally.
var ErrTransportClosed = errors.New("transport closed")

// ErrFrameRefused is wrapped by the error of a Transport.Read that refused
// a frame for its size (too large, or of a size it does not declare) and
// closed the connection; the hub counts it as LimitFrame.
var ErrFrameRefused = errors.New("frame refused")

// Transport is one connection's frames. Read is called from one goroutine
// and Write from another; Close may be called from any goroutine, more than
// once, and must unblock both.
type Transport interface {
	// Read returns the next frame. Frames over the transport's size limit
	// end the connection (a WebSocket closes with 1009) and return an error.
	Read(ctx context.Context) (FrameKind, []byte, error)
	// Write sends one binary frame; ctx carries the write deadline.
	Write(ctx context.Context, frame []byte) error
	// Ping sends a keepalive ping and waits for its pong until ctx ends. It
	// may be called from any goroutine, while Read and Write run.
	Ping(ctx context.Context) error
	// Close ends the connection with a close code and reason.
	Close(code wire.CloseCode, reason string) error
}
