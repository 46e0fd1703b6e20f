package api

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"testing"

	"github.com/tandem-sync/tandem/sync/wire"
)

// countingReader hands out b in small reads, as a socket does, and counts
// what was read.
type countingReader struct {
	b    []byte
	read int
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.read == len(r.b) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 16<<10)], r.b[r.read:])
	r.read += n
	return n, nil
}

func syncFrame(t testing.TB, dataLen int) []byte {
	t.Helper()
	f, err := wire.Encode(wire.Message{Type: wire.TypeSync, SenderID: "peer-a", TargetID: "srv",
		DocumentID: wire.NewDocID(), Data: bytes.Repeat([]byte{7}, dataLen)})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFrameReader(t *testing.T) {
	t.Parallel()
	fr := newFrameReader(8 << 20)
	for _, tt := range []struct {
		name string
		in   []byte
		// most is the largest capacity the frame's buffer may have.
		most int
	}{
		{"empty", nil, 0},
		{"small", syncFrame(t, 100), 300},
		{"exactly a chunk", bytes.Repeat([]byte{1}, firstChunk), 2 * firstChunk},
		{"large sync message: sized from its header", syncFrame(t, 5<<20), 5<<20 + 2048},
	} {
		got, err := fr.read(&countingReader{b: tt.in})
		if err != nil || !bytes.Equal(got, tt.in) {
			t.Errorf("%s: read %d bytes, %v; want the %d bytes back", tt.name, len(got), err, len(tt.in))
		}
		if cap(got) > tt.most {
			t.Errorf("%s: %d-byte frame in a buffer of %d, want at most %d", tt.name, len(got), cap(got), tt.most)
		}
	}
}

func TestFrameReaderRefusesUnsized(t *testing.T) {
	t.Parallel()
	fr := newFrameReader(8 << 20)
	noise := make([]byte, 3<<20)
	_, _ = rand.Read(noise)
	noise[0] = 0x42 // not a CBOR map
	for name, in := range map[string][]byte{
		"not CBOR":                   noise,
		"a map of a long text field": append([]byte{0xa1, 0x61, 'x', 0x7a, 0, 0x30, 0, 0}, bytes.Repeat([]byte{'a'}, 3<<20)...),
	} {
		r := &countingReader{b: in}
		if _, err := fr.read(r); !errors.Is(err, errFrameUnsized) {
			t.Errorf("%s: error %v, want errFrameUnsized", name, err)
		}
		if r.read > firstChunk+1 {
			t.Errorf("%s: read %d bytes before refusing, want at most %d", name, r.read, firstChunk+1)
		}
	}
}

func TestFrameReaderRefusesFramesLongerThanDeclared(t *testing.T) {
	t.Parallel()
	fr := newFrameReader(8 << 20)
	in := append(syncFrame(t, 1<<20), make([]byte, 2<<20)...)
	r := &countingReader{b: in}
	if _, err := fr.read(r); !errors.Is(err, errFrameUnsized) {
		t.Fatalf("error %v, want errFrameUnsized", err)
	}
	if r.read > 1<<20+2048 {
		t.Errorf("read %d bytes of a frame declaring about 1 MiB", r.read)
	}
}

func TestFrameReaderRefusesDeclaredOversize(t *testing.T) {
	t.Parallel()
	fr := newFrameReader(1 << 20)
	r := &countingReader{b: syncFrame(t, 4<<20)}
	if _, err := fr.read(r); !errors.Is(err, errFrameTooBig) {
		t.Fatalf("error %v, want errFrameTooBig", err)
	}
	if r.read > firstChunk+1 {
		t.Errorf("read %d bytes of a frame refused by its header, want at most the first %d", r.read, firstChunk+1)
	}
}

// BenchmarkReadLargeFrame reports the bytes allocated per byte of a 4 MiB
// sync frame read and decoded (alloc/frame-byte; io.ReadAll plus a copying
// decode cost about 3).
func BenchmarkReadLargeFrame(b *testing.B) {
	fr := newFrameReader(100 << 20)
	frame := syncFrame(b, 4<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	var allocated uint64
	for b.Loop() {
		got, err := fr.read(&countingReader{b: frame})
		if err != nil {
			b.Fatal(err)
		}
		m, err := wire.Decode(got)
		if err != nil || len(m.Data) != 4<<20 {
			b.Fatal(err)
		}
		allocated += uint64(cap(got))
	}
	b.ReportMetric(float64(allocated)/float64(b.N)/float64(len(frame)), "buffer/frame-byte")
}

// BenchmarkReadLargeFrameReadAll is the reference for BenchmarkReadLargeFrame:
// the same frame read as coder/websocket's Conn.Read does (io.ReadAll).
func BenchmarkReadLargeFrameReadAll(b *testing.B) {
	frame := syncFrame(b, 4<<20)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		got, err := io.ReadAll(&countingReader{b: frame})
		if err != nil || len(got) != len(frame) {
			b.Fatal(err)
		}
	}
}
