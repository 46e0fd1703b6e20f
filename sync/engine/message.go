package engine

import (
	"fmt"

	"github.com/tandem-sync/tandem/internal/leb128"
	"github.com/tandem-sync/tandem/sync/core"
)

// Sync message types (the first byte).
const (
	MessageV1 = 0x42
	MessageV2 = 0x43
)

// Flag bits of a message trailer (SYNC-ALGORITHM.md §1.4; 0.9+ cores).
const (
	FlagSyncReset         = 0x01
	FlagReadOnly          = 0x02
	FlagSupportsSyncReset = 0x04
)

// Have is one entry of a message's have list: the heads the sender last
// synced with us, and a filter over its changes since.
type Have struct {
	LastSync []Hash
	Bloom    BloomFilter
}

// Message is a decoded sync message (SYNC-ALGORITHM.md §1.2).
type Message struct {
	Version byte // MessageV1 or MessageV2
	Heads   []Hash
	Need    []Hash
	Have    []Have
	Changes []*Change // in message order; a V2 entry's chunks in turn
	// Trailer is true if the message had a trailer; Flags are its
	// bitfield bits (bytes with the high bit set), and a trailer of
	// capabilities only (0.5.4–0.8 cores) has none.
	Trailer bool
	Flags   byte
}

// ErrBadMessage is wrapped by errors for bytes that are not a sync
// message. It is sync/core's ErrBadSyncMessage, so that a room reports a
// message the engine cannot decode and one whose changes the core refuses
// alike.
var ErrBadMessage = core.ErrBadSyncMessage

// maxHaves bounds the have entries of a message: the core sends 0 or 1,
// and each entry costs a filter query per change the peer may lack.
const maxHaves = 8

// DecodeMessage decodes a V1 or V2 sync message. Hash lists are sorted and
// deduplicated (stock peers send them so). Every change entry must hold
// one or more uncompressed change chunks (a V2 whole-document entry is
// refused: this engine never advertises V2, so peers do not send them).
// Bytes after the trailer are ignored, as by every core; a trailer that
// does not parse is ignored, as by the 0.5 core. The message's slices
// refer to b.
func DecodeMessage(b []byte) (*Message, error) {
	m, err := decodeMessage(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadMessage, err)
	}
	return m, nil
}

func decodeMessage(b []byte) (*Message, error) {
	r := &reader{b: b}
	m := &Message{Version: r.byte()}
	if r.err != nil {
		return nil, r.err
	}
	if m.Version != MessageV1 && m.Version != MessageV2 {
		return nil, fmt.Errorf("unknown message type 0x%02x", m.Version)
	}
	m.Heads = sortHashes(r.hashes())
	m.Need = sortHashes(r.hashes())
	n := r.uleb()
	if r.err == nil && n > maxHaves {
		return nil, fmt.Errorf("%d have entries", n)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		h := Have{LastSync: sortHashes(r.hashes())}
		bloom := r.take(r.uleb())
		if r.err != nil {
			break
		}
		f, err := DecodeBloomFilter(bloom)
		if err != nil {
			return nil, err
		}
		h.Bloom = f
		m.Have = append(m.Have, h)
	}
	n = r.uleb()
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail(errShort)
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		entry := r.take(r.uleb())
		if r.err != nil {
			break
		}
		if len(entry) == 0 {
			return nil, fmt.Errorf("change entry %d is empty", i)
		}
		for len(entry) > 0 {
			c, rest, err := parseChunk(entry)
			if err != nil {
				return nil, fmt.Errorf("change entry %d: %w", i, err)
			}
			m.Changes = append(m.Changes, c)
			entry = rest
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) > 0 {
		t := r.take(r.uleb())
		if r.err == nil {
			m.Trailer = true
			for _, c := range t {
				if c&0x80 != 0 {
					m.Flags |= c &^ 0x80
				}
			}
		}
	}
	return m, nil
}

// Encode writes m as the core does: heads, need, have, one change chunk per
// entry, and no trailer (Trailer and Flags are not written: this engine
// speaks to peers as a 0.5 core, which never sends one). Version is
// written as given (MessageV1 if zero); a V2 message puts its changes in one
// entry.
func (m *Message) Encode() []byte {
	v := m.Version
	if v == 0 {
		v = MessageV1
	}
	b := []byte{v}
	b = appendHashes(b, m.Heads)
	b = appendHashes(b, m.Need)
	b = leb128.AppendUint(b, uint64(len(m.Have)))
	for i := range m.Have {
		h := &m.Have[i]
		b = appendHashes(b, h.LastSync)
		b = leb128.AppendUint(b, uint64(h.Bloom.EncodedLen()))
		b = h.Bloom.AppendEncoded(b)
	}
	if v == MessageV2 && len(m.Changes) > 0 {
		n := 0
		for _, c := range m.Changes {
			n += len(c.Raw)
		}
		b = leb128.AppendUint(b, 1)
		b = leb128.AppendUint(b, uint64(n))
		for _, c := range m.Changes {
			b = append(b, c.Raw...)
		}
		return b
	}
	b = leb128.AppendUint(b, uint64(len(m.Changes)))
	for _, c := range m.Changes {
		b = leb128.AppendUint(b, uint64(len(c.Raw)))
		b = append(b, c.Raw...)
	}
	return b
}
