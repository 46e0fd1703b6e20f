package wire

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
)

// DocID is an automerge-repo document ID: the bs58check encoding of (usually
// 16) random bytes, e.g. "4NMNnkMhL8jXrdJ9jamS58PAVdXu". Only IDs that passed
// ParseDocID reach storage.
type DocID string

// ErrInvalidDocID is wrapped by ParseDocID's errors.
var ErrInvalidDocID = errors.New("invalid document ID")

const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// MaxDocIDLen bounds the length of a document ID's text; real IDs are 21-28
// characters.
const MaxDocIDLen = 64

// ParseDocID validates s as a bs58check document ID (Base58 with the Bitcoin
// alphabet over payload ‖ sha256(sha256(payload))[0:4]). It accepts an
// "automerge:" URL too and returns the bare ID. Like the JS Repo it does not
// insist on a 16-byte payload, but the payload must not be empty.
func ParseDocID(s string) (DocID, error) {
	s = strings.TrimPrefix(s, "automerge:")
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidDocID)
	}
	if len(s) > MaxDocIDLen {
		return "", fmt.Errorf("%w: %d characters is too long", ErrInvalidDocID, len(s))
	}
	if _, err := DecodeBS58Check(s); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidDocID, err)
	}
	return DocID(s), nil
}

// DecodeBS58Check decodes bs58check text (Base58 with the Bitcoin alphabet
// over payload ‖ sha256(sha256(payload))[0:4]), verifies the checksum and
// returns the payload, which must not be empty. automerge-repo uses it for
// document IDs and for change hashes in URLs. Its cost is quadratic in the
// text's length, which callers keep small.
func DecodeBS58Check(s string) ([]byte, error) {
	raw, err := base58Decode(s)
	if err != nil {
		return nil, err
	}
	if len(raw) < 5 {
		return nil, errors.New("too short")
	}
	payload, sum := raw[:len(raw)-4], raw[len(raw)-4:]
	if want := checksum(payload); string(want[:]) != string(sum) {
		return nil, errors.New("bad checksum")
	}
	return payload, nil
}

// EncodeBS58Check encodes a payload as bs58check text.
func EncodeBS58Check(payload []byte) string {
	sum := checksum(payload)
	return base58Encode(append(append([]byte(nil), payload...), sum[:]...))
}

// NewDocID returns a fresh random document ID, as automerge-repo's
// generateAutomergeUrl makes them (16 random bytes, UUIDv4 bits set).
func NewDocID() DocID {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err)) // never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return DocIDFromBytes(b[:])
}

// DocIDFromBytes encodes a binary document ID as bs58check.
func DocIDFromBytes(b []byte) DocID { return DocID(EncodeBS58Check(b)) }

// URL returns the document's automerge: URL.
func (id DocID) URL() string { return "automerge:" + string(id) }

func checksum(payload []byte) [4]byte {
	h1 := sha256.Sum256(payload)
	h2 := sha256.Sum256(h1[:])
	return [4]byte(h2[:4])
}

func base58Decode(s string) ([]byte, error) {
	zeros := 0
	for zeros < len(s) && s[zeros] == '1' {
		zeros++
	}
	// Big-endian base-256 digits, built up one base-58 digit at a time.
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(base58Alphabet, s[i])
		if d < 0 {
			return nil, fmt.Errorf("character %q is not Base58", s[i])
		}
		carry := d
		for j := len(out) - 1; j >= 0; j-- {
			carry += int(out[j]) * 58
			out[j] = byte(carry)
			carry >>= 8
		}
		for carry > 0 {
			out = append([]byte{byte(carry)}, out...)
			carry >>= 8
		}
	}
	// Drop leading zero bytes the arithmetic produced, then restore one per
	// leading '1'.
	k := 0
	for k < len(out) && out[k] == 0 {
		k++
	}
	return append(make([]byte, zeros), out[k:]...), nil
}

func base58Encode(b []byte) string {
	zeros := 0
	for zeros < len(b) && b[zeros] == 0 {
		zeros++
	}
	digits := make([]byte, 0, len(b)*138/100+1) // little-endian base-58 digits
	for _, v := range b[zeros:] {
		carry := int(v)
		for j := range digits {
			carry += int(digits[j]) << 8
			digits[j] = byte(carry % 58)
			carry /= 58
		}
		for carry > 0 {
			digits = append(digits, byte(carry%58))
			carry /= 58
		}
	}
	var sb strings.Builder
	for range zeros {
		sb.WriteByte('1')
	}
	for i := len(digits) - 1; i >= 0; i-- {
		sb.WriteByte(base58Alphabet[digits[i]])
	}
	return sb.String()
}
