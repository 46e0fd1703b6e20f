package cluster

import (
	"bytes"
	"testing"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

func TestMessageRoundTrip(t *testing.T) {
	changes := []core.Change{{Data: []byte("one")}, {Data: []byte{}}, {Data: bytes.Repeat([]byte{7}, 300)}}
	m, err := decode(encodeChanges("node-a", changes, 5, 7))
	if err != nil {
		t.Fatal(err)
	}
	if m.kind != kindChanges || m.node != "node-a" || m.first != 5 || m.last != 7 || len(m.changes) != 3 {
		t.Fatalf("decoded %+v", m)
	}
	for i, c := range changes {
		if !bytes.Equal(m.changes[i], c.Data) {
			t.Errorf("change %d: %q, want %q", i, m.changes[i], c.Data)
		}
	}

	m, err = decode(encodeDeleted("n"))
	if err != nil || m.kind != kindDeleted || m.node != "n" {
		t.Fatalf("deleted: %+v, %v", m, err)
	}

	doc := wire.NewDocID()
	eph := wire.Message{Type: wire.TypeEphemeral, SenderID: "p1", TargetID: "p2", DocumentID: doc,
		SessionID: "s", Count: 3, Data: []byte{0xa0}}
	b, err := encodeEphemeral("n", eph)
	if err != nil {
		t.Fatal(err)
	}
	m, err = decode(b)
	if err != nil || m.kind != kindEphemeral || m.ephemeral.DocumentID != doc || m.ephemeral.Count != 3 || m.ephemeral.SenderID != "p1" {
		t.Fatalf("ephemeral: %+v, %v", m, err)
	}
}

func TestMessageDecodeRefusesTruncated(t *testing.T) {
	full := encodeChanges("node-a", []core.Change{{Data: []byte("abcdef")}}, 1, 1)
	for n := range len(full) {
		if _, err := decode(full[:n]); err == nil {
			t.Errorf("decode of %d of %d bytes succeeded", n, len(full))
		}
	}
	if _, err := decode([]byte{9, 1, 0}); err == nil {
		t.Error("decode of an unknown version succeeded")
	}
}
