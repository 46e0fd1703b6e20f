package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestParseDocID(t *testing.T) {
	t.Parallel()
	const valid = "4NMNnkMhL8jXrdJ9jamS58PAVdXu"
	// valid with its last character changed, which breaks the checksum.
	badSum := valid[:len(valid)-1] + "v"
	tests := []struct {
		name, in string
		want     DocID // "" means an error is expected
	}{
		{"valid", valid, valid},
		{"URL", "automerge:" + valid, valid},
		{"URL with heads", "automerge:" + valid + "#2Xn9mWq|3abc", valid},
		{"bare with heads", valid + "#heads", valid},
		{"leading ones", "11BaTNMSr5fPEzu2q49X4UmT2Pb", "11BaTNMSr5fPEzu2q49X4UmT2Pb"},
		{"empty", "", ""},
		{"empty URL", "automerge:", ""},
		{"only heads", "#" + valid, ""},
		{"zero", valid[:5] + "0" + valid[6:], ""},
		{"capital O", valid[:5] + "O" + valid[6:], ""},
		{"capital I", valid[:5] + "I" + valid[6:], ""},
		{"lower l", valid[:5] + "l" + valid[6:], ""},
		{"space", " " + valid, ""},
		{"non-ASCII", valid[:5] + "é" + valid[6:], ""},
		{"bad checksum", badSum, ""},
		{"too long", strings.Repeat("2", MaxDocIDLen+1), ""},
		{"too short", "1111", ""},
		{"hyphenated UUID", "f1c29c84-74c8-4ade-b800-be47627d33bf", ""},
		{"path traversal", "../../etc/passwd", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDocID(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseDocID(%q) = %q, want error", tt.in, got)
				}
				if !errors.Is(err, ErrInvalidDocID) {
					t.Errorf("error %v does not wrap ErrInvalidDocID", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseDocID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// The payloads and IDs were cross-checked with bs58check 3 in node:
// bs58check.decode("4NMNnkMhL8jXrdJ9jamS58PAVdXu") and
// bs58check.encode(Buffer.from("0000ff0102030405060708090a0b0c0d", "hex")).
func TestDocIDFromBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		payload string
		want    DocID
	}{
		{"f1c29c8474c84adeb800be47627d33bf", "4NMNnkMhL8jXrdJ9jamS58PAVdXu"},
		{"0000ff0102030405060708090a0b0c0d", "11BaTNMSr5fPEzu2q49X4UmT2Pb"},
		{"00", "1Wh4bh"},
	}
	for _, tt := range tests {
		payload, _ := hex.DecodeString(tt.payload)
		id := DocIDFromBytes(payload)
		if id != tt.want {
			t.Errorf("DocIDFromBytes(%s) = %q, want %q", tt.payload, id, tt.want)
		}
		if got, err := ParseDocID(string(id)); err != nil || got != id {
			t.Errorf("ParseDocID(%q) = %q, %v", id, got, err)
		}
		raw, err := base58Decode(string(id))
		if err != nil || !bytes.Equal(raw[:len(raw)-4], payload) {
			t.Errorf("base58Decode(%q) = %x, %v; want payload %s", id, raw, err, tt.payload)
		}
	}
	if got := DocID("abc").URL(); got != "automerge:abc" {
		t.Errorf("URL = %q", got)
	}
}

func TestNewDocID(t *testing.T) {
	t.Parallel()
	seen := make(map[DocID]bool, 1000)
	for range 1000 {
		id := NewDocID()
		if got, err := ParseDocID(string(id)); err != nil || got != id {
			t.Fatalf("ParseDocID(%q) = %q, %v", id, got, err)
		}
		if seen[id] {
			t.Fatalf("duplicate ID %q", id)
		}
		seen[id] = true
		raw, err := base58Decode(string(id))
		if err != nil || len(raw) != 16+4 || raw[6]>>4 != 4 || raw[8]>>6 != 2 {
			t.Fatalf("NewDocID %q decodes to %x, %v; want a UUIDv4 and a checksum", id, raw, err)
		}
	}
}
