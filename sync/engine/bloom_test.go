package engine

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/automerge/automerge-go"
)

// TestBloomWorkedExample is the probe computation of SYNC-ALGORITHM.md §2.
func TestBloomWorkedExample(t *testing.T) {
	var h Hash
	b, _ := hex.DecodeString("0f2b8295e76e1bb8687f065977ec533f7761e15b7b287ca2c28ad2036dd736f1")
	copy(h[:], b)
	f := NewBloomFilter([]Hash{h})
	if got := hex.EncodeToString(f.AppendEncoded(nil)); got != "010a076698" {
		t.Fatalf("filter %s, want 010a076698", got)
	}
	if !f.Contains(h) {
		t.Fatal("filter does not contain its hash")
	}
	var empty BloomFilter
	if len(empty.AppendEncoded(nil)) != 0 || empty.Contains(h) {
		t.Fatal("the empty filter is not empty")
	}
}

// TestBloomMatchesAutomergeGo builds, for documents of several sizes, the
// filter the core puts in its first message of a session (over every
// change) and the one in Go over the same hashes, and compares the bytes.
func TestBloomMatchesAutomergeGo(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 8, 100, 1001} {
		doc, raw := linearDoc(t, n, 3)
		m, ok := automerge.NewSyncState(doc).GenerateMessage()
		if !ok {
			t.Fatal("no message")
		}
		msg, err := DecodeMessage(m.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Have) != 1 || len(msg.Have[0].LastSync) != 0 {
			t.Fatalf("n=%d: unexpected have %+v", n, msg.Have)
		}
		var hs []Hash
		for _, b := range raw {
			c, err := ParseChange(b)
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, c.Hash)
		}
		core := msg.Have[0].Bloom.AppendEncoded(nil)
		ours := NewBloomFilter(hs).AppendEncoded(nil)
		if !bytes.Equal(core, ours) {
			t.Fatalf("n=%d: filters differ:\ncore %x\nours %x", n, core, ours)
		}
		// The message as a whole is what the engine sends in that state.
		d := docOf(t, raw)
		got, ok := NewSyncState().Generate(d)
		if !ok || !bytes.Equal(got, m.Bytes()) {
			t.Fatalf("n=%d: first message differs:\ncore %x\nours %x", n, m.Bytes(), got)
		}
		// And the filter decodes to itself and answers for its hashes.
		f, err := DecodeBloomFilter(ours)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if !f.Contains(h) {
				t.Fatalf("n=%d: decoded filter lacks a hash", n)
			}
		}
		if n == 1001 {
			t.Logf("1001 entries: %d bytes, identical to the core's", len(ours))
		}
	}
}

func TestBloomDecodeRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"entries but no bits": {0x01, 0x00, 0x07},
		"short":               {0x05, 0x0a, 0x07, 0x00},
		"too many probes":     {0x01, 0x0a, 0x41, 0x00, 0x00},
		"overlong":            {0x81, 0x00, 0x0a, 0x07, 0, 0},
		"over 32 bits":        {0x80, 0x80, 0x80, 0x80, 0x10, 0x0a, 0x07},
	} {
		if _, err := DecodeBloomFilter(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	// Surplus bytes are ignored, as by the core.
	f, err := DecodeBloomFilter([]byte{0x01, 0x0a, 0x07, 0x66, 0x98, 0xff})
	if err != nil || len(f.bits) != 2 {
		t.Fatalf("surplus: %v", err)
	}
}

func TestBloomFalsePositiveRate(t *testing.T) {
	var hs []Hash
	for i := range 2000 {
		var h Hash
		h[0], h[1], h[5], h[9] = byte(i), byte(i>>8), byte(i*7), byte(i*13)
		hs = append(hs, h)
	}
	f := NewBloomFilter(hs[:1000])
	fp := 0
	for _, h := range hs[1000:] {
		if f.Contains(h) {
			fp++
		}
	}
	t.Logf("false positives: %d of 1000", fp)
	if fp > 50 {
		t.Fatalf("%d false positives of 1000", fp)
	}
}
