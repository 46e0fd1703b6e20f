package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// project keeps only the fields Encode writes for m.Type, normalized the way
// a round trip changes them: nil data becomes empty, an empty storageId
// stays empty, and a count of 2^32 or more goes through float64.
func project(m Message) Message {
	p := Message{Type: m.Type, SenderID: m.SenderID}
	if m.Type != TypeJoin {
		p.TargetID = m.TargetID
	}
	switch m.Type {
	case TypeJoin:
		p.PeerMetadata = m.PeerMetadata
		p.SupportedProtocolVersions = m.SupportedProtocolVersions
	case TypePeer:
		p.PeerMetadata = m.PeerMetadata
		p.SelectedProtocolVersion = m.SelectedProtocolVersion
	case TypeError:
		p.ErrorMessage = m.ErrorMessage
	case TypeSync, TypeRequest:
		p.DocumentID, p.Data = m.DocumentID, m.Data
	case TypeDocUnavailable:
		p.DocumentID = m.DocumentID
	case TypeEphemeral:
		p.DocumentID, p.Data, p.SessionID = m.DocumentID, m.Data, m.SessionID
		p.Count = m.Count
		if p.Count >= 1<<32 {
			p.Count = uint64(float64(p.Count))
		}
	}
	if p.Data == nil {
		switch m.Type {
		case TypeSync, TypeRequest, TypeEphemeral:
			p.Data = []byte{}
		}
	}
	return p
}

func FuzzDecode(f *testing.F) {
	for _, b := range [][]byte{
		cborxJoin, cborxPeer, cborxSync, cborxEphemeral, cborxEphemeralBigCount,
		cborxRemoteSubs, cborxRemoteHeads, cborxTag64, indefSync, nullsSync, floatCount,
	} {
		f.Add(b)
	}
	for _, m := range sampleMessages() {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		b, err := Encode(m)
		switch m.Type {
		case TypeJoin, TypePeer, TypeError, TypeSync, TypeRequest, TypeDocUnavailable, TypeEphemeral:
		default:
			if err == nil {
				t.Fatalf("Encode of type %q succeeded", m.Type)
			}
			return
		}
		if err != nil {
			t.Fatalf("Encode(%#v): %v", m, err)
		}
		m2, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(%#v)) = %x: %v", m, b, err)
		}
		if want := project(m); !reflect.DeepEqual(m2, want) {
			t.Fatalf("round trip =\n%#v\nwant\n%#v", m2, want)
		}
		if b2, err := Encode(m2); err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("second Encode = %x, %v; want %x", b2, err, b)
		}
	})
}

func benchSync() Message {
	return Message{
		Type: TypeSync, SenderID: "storage-server-vm", TargetID: "peer-3k4j5h6g",
		DocumentID: testDocID, Data: bytes.Repeat([]byte{0x42}, 1024),
	}
}

func BenchmarkEncodeSync(b *testing.B) {
	m := benchSync()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Encode(m); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeSync(b *testing.B) {
	frame, err := Encode(benchSync())
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
}
