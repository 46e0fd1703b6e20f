package wire

import (
	"bytes"
	"testing"
)

func TestSizeHint(t *testing.T) {
	t.Parallel()
	big := Message{Type: TypeSync, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID, Data: bytes.Repeat([]byte{7}, 1<<20)}
	frame, err := Encode(big)
	if err != nil {
		t.Fatal(err)
	}
	if size, ok := SizeHint(frame[:64]); ok {
		t.Errorf("SizeHint(a prefix cut inside the document ID) = %d, true; want no estimate", size)
	}
	for _, n := range []int{256, 4096, 64 << 10} {
		size, ok := SizeHint(frame[:n])
		if !ok || size < len(frame) || size > len(frame)+1024 {
			t.Errorf("SizeHint(first %d bytes) = %d, %v; want about %d", n, size, ok, len(frame))
		}
	}
	// The stock client's own encoding (cbor-x: map16, tag 64 on data).
	if size, ok := SizeHint(cborxSync[:len(cborxSync)-2]); !ok || size < len(cborxSync) || size > len(cborxSync)+1024 {
		t.Errorf("SizeHint(cbor-x sync) = %d, %v; want about %d", size, ok, len(cborxSync))
	}
	for _, b := range [][]byte{nil, {0x80}, frame} {
		if size, ok := SizeHint(b); ok {
			t.Errorf("SizeHint(%x…) = %d, true; want no estimate", b[:min(len(b), 4)], size)
		}
	}
	// A declared length far past any limit.
	huge := []byte{0xa1, 0x64, 'd', 'a', 't', 'a', 0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if size, ok := SizeHint(huge); !ok || size < 1<<40 {
		t.Errorf("SizeHint(huge) = %d, %v", size, ok)
	}
}
