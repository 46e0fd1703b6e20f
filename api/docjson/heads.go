package docjson

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/wire"
)

// FormatHeads returns heads (automerge.ChangeHash or core.Hash) as 64-digit
// hex strings, the form the API answers with and ParseHeads accepts.
func FormatHeads[H ~[32]byte](hs []H) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

// ParseHeads parses a list of change hashes such as a "heads" query
// parameter. Heads are separated by "," or "|" (automerge-repo URLs write
// automerge:<id>#<head>|<head>); spaces around each head are ignored. Each
// head is either 64 hex digits, as automerge.ChangeHash.String prints it and
// as History reports it, or the bs58check encoding of the 32-byte hash, as
// automerge-repo writes it. Duplicates are dropped. An empty string, an empty
// element, more than MaxHeads heads, or a head in neither form gives an error
// wrapping ErrBadHeads. ParseHeads does not check that the heads exist in any
// document; RenderAt does.
func ParseHeads(s string) ([]automerge.ChangeHash, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("docjson: %w: no heads given", ErrBadHeads)
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '|' })
	if n := strings.Count(s, ",") + strings.Count(s, "|") + 1; n != len(parts) {
		return nil, fmt.Errorf("docjson: %w: empty head in %q", ErrBadHeads, wire.Excerpt(s))
	}
	if len(parts) > MaxHeads {
		return nil, fmt.Errorf("docjson: %w: %d heads, at most %d allowed", ErrBadHeads, len(parts), MaxHeads)
	}
	out := make([]automerge.ChangeHash, 0, len(parts))
	seen := make(map[automerge.ChangeHash]bool, len(parts))
	for _, p := range parts {
		p = strings.TrimSpace(p)
		h, err := parseHead(p)
		if err != nil {
			return nil, fmt.Errorf("docjson: %w: head %q: %v", ErrBadHeads, wire.Excerpt(p), err)
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out, nil
}

func parseHead(s string) (automerge.ChangeHash, error) {
	var h automerge.ChangeHash
	switch {
	case s == "":
		return h, fmt.Errorf("empty")
	case len(s) == 2*len(h):
		if _, err := hex.Decode(h[:], []byte(s)); err != nil {
			return h, fmt.Errorf("not hex: %v", err)
		}
		return h, nil
	case len(s) > 60: // bs58check of 32 bytes has at most 50 characters
		return h, fmt.Errorf("neither 64 hex digits nor bs58check")
	}
	payload, err := wire.DecodeBS58Check(s)
	if err != nil {
		return h, fmt.Errorf("bs58check: %w", err)
	}
	if len(payload) != len(h) {
		return h, fmt.Errorf("bs58check payload has %d bytes, want %d", len(payload), len(h))
	}
	copy(h[:], payload)
	return h, nil
}
