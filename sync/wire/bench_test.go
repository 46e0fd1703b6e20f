package wire

import (
	"bytes"
	"fmt"
	"testing"
)

// The codec on the server's hot path. BenchmarkEncodeSync and
// BenchmarkDecodeSync (fuzz_test.go) cover a 1 KiB sync message; these
// cover the sizes around it (a typical edit's ~100 bytes up to a large
// document's first sync), the frames stock clients actually send (cbor-x:
// map16 headers, undefined fields), the other message types, and the
// per-message work besides the codec (document IDs, size hints).
//
//	go test -run '^$' -bench . ./sync/wire

var benchSizes = []int{100, 16 << 10, 1 << 20}

func BenchmarkEncodeSyncSizes(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("data=%d", n), func(b *testing.B) {
			m := Message{Type: TypeSync, SenderID: "storage-server-vm", TargetID: "peer-3k4j5h6g",
				DocumentID: testDocID, Data: bytes.Repeat([]byte{0x42}, n)}
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeSyncSizes(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("data=%d", n), func(b *testing.B) {
			frame, err := Encode(Message{Type: TypeSync, SenderID: "peer-3k4j5h6g", TargetID: "storage-server-vm",
				DocumentID: testDocID, Data: bytes.Repeat([]byte{0x42}, n)})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeStockFrames decodes frames as the stock client's cbor-x
// writes them (codec_test.go has their bytes).
func BenchmarkDecodeStockFrames(b *testing.B) {
	for _, tt := range []struct {
		name  string
		frame []byte
	}{
		{"join", cborxJoin},
		{"sync", cborxSync},
		{"ephemeral", cborxEphemeral},
		{"remote-heads-changed", cborxRemoteHeads},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(tt.frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(tt.frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeMessages encodes what the server sends besides sync
// messages: the handshake answer, relayed presence, errors and
// doc-unavailable.
func BenchmarkEncodeMessages(b *testing.B) {
	for _, m := range []Message{
		{Type: TypePeer, SenderID: "tandem-vm", TargetID: "peer-3k4j5h6g", SelectedProtocolVersion: ProtocolVersion,
			PeerMetadata: &PeerMetadata{StorageID: "3b4c3f0e-8d1a-4e55-9a8e-7f0c2d1b6a59"}},
		{Type: TypeEphemeral, SenderID: "peer-A", TargetID: "peer-3k4j5h6g", DocumentID: testDocID,
			SessionID: "session-1", Count: 42, Data: bytes.Repeat([]byte{0xa1}, 64)},
		{Type: TypeError, SenderID: "tandem-vm", TargetID: "peer-3k4j5h6g", ErrorMessage: "document is read-only for this connection"},
		{Type: TypeDocUnavailable, SenderID: "tandem-vm", TargetID: "peer-3k4j5h6g", DocumentID: testDocID},
	} {
		b.Run(m.Type, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Encode(m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkParseDocID(b *testing.B) {
	for _, s := range []string{string(testDocID), testDocID.URL() + "#heads"} {
		b.Run(fmt.Sprintf("len=%d", len(s)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseDocID(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSizeHint(b *testing.B) {
	frame, err := Encode(Message{Type: TypeSync, SenderID: "peer-A", DocumentID: testDocID, Data: bytes.Repeat([]byte{1}, 1<<20)})
	if err != nil {
		b.Fatal(err)
	}
	prefix := frame[:512] // what the frame reader has in hand when it asks
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := SizeHint(prefix); !ok {
			b.Fatal("no size hint")
		}
	}
}
