package api

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tandem-sync/tandem/sync/wire"
)

// firstChunk is how much of a frame is read before deciding how big a
// buffer it needs: most frames fit whole.
const firstChunk = 32 << 10

// errFrameTooBig is a frame refused before it was read whole, because its
// own header says it is over the limit.
var errFrameTooBig = errors.New("frame over the size limit")

// errFrameUnsized is a frame longer than firstChunk whose first bytes do not
// declare its size (wire.SizeHint). Every protocol message that long is a
// CBOR map whose byte string (a sync message, an ephemeral payload) says
// how long it is; anything else is malformed, and reading it whole to find
// out would cost a buffer grown step by step to the limit.
var errFrameUnsized = errors.New("frame over 32 KiB whose CBOR header does not declare its size")

// frameReader reads WebSocket messages into buffers of about their size:
// small ones through a shared scratch chunk and then an exact copy, large
// ones into one buffer sized from the frame's CBOR header (wire.SizeHint),
// so that a frame costs about its size once instead of the doubling growth
// of io.ReadAll. A frame whose header declares more than limit, or a large
// one whose header declares no size, is refused before it is buffered.
type frameReader struct {
	limit int64
	// chunks holds scratch buffers of firstChunk+1 bytes; one per connection
	// reading at any moment, shared by all.
	chunks sync.Pool
}

func newFrameReader(limit int64) *frameReader {
	fr := &frameReader{limit: limit}
	// One byte over firstChunk, so that a frame of exactly firstChunk
	// bytes is told from a longer one by the first read.
	fr.chunks.New = func() any { b := make([]byte, firstChunk+1); return &b }
	return fr
}

// read reads one whole message from r.
func (fr *frameReader) read(r io.Reader) ([]byte, error) {
	chunk := fr.chunks.Get().(*[]byte)
	defer fr.chunks.Put(chunk)
	n, err := io.ReadFull(r, *chunk)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return append([]byte(nil), (*chunk)[:n]...), nil
	case err != nil:
		return nil, err
	}
	hint, ok := wire.SizeHint((*chunk)[:n])
	if !ok {
		return nil, errFrameUnsized
	}
	if int64(hint) > fr.limit+1024 { // the hint allows slack; the transport enforces the exact limit
		return nil, fmt.Errorf("%w: its header declares about %d bytes, the limit is %d", errFrameTooBig, hint, fr.limit)
	}
	size := int64(hint)
	frame := make([]byte, n, min(size, fr.limit+1))
	copy(frame, *chunk)
	for {
		if len(frame) == cap(frame) {
			// The frame ends here, or it is longer than its header
			// declared: refuse it rather than copy it into a bigger buffer.
			m, err := r.Read((*chunk)[:1])
			switch {
			case m > 0:
				return nil, fmt.Errorf("%w: it is longer than the %d bytes its header declares", errFrameUnsized, hint)
			case errors.Is(err, io.EOF):
				return frame, nil
			case err != nil:
				return nil, err
			}
			continue
		}
		m, err := r.Read(frame[len(frame):cap(frame)])
		frame = frame[:len(frame)+m]
		if errors.Is(err, io.EOF) {
			return frame, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
