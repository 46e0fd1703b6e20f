package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Bloom filter parameters the Automerge core writes (about 1% false
// positives). A filter carries its own parameters, so a decoded filter is
// queried with whatever its sender chose.
const (
	bloomBitsPerEntry = 10
	bloomProbes       = 7
	// maxBloomProbes bounds the probes of a received filter: each query
	// costs that many steps, and stock peers use 7.
	maxBloomProbes = 64
)

// BloomFilter is the Automerge sync protocol's Bloom filter over change
// hashes (SYNC-ALGORITHM.md §2; sync/bloom.rs in the Rust core). The zero
// value is the empty filter, which contains nothing and encodes to no
// bytes.
type BloomFilter struct {
	entries, bitsPerEntry, probes uint32
	bits                          []byte
}

// NewBloomFilter returns the filter the core builds over hashes.
func NewBloomFilter(hashes []Hash) BloomFilter {
	f := BloomFilter{
		entries:      uint32(len(hashes)),
		bitsPerEntry: bloomBitsPerEntry,
		probes:       bloomProbes,
	}
	if len(hashes) == 0 {
		return f
	}
	f.bits = make([]byte, bloomBytes(uint64(len(hashes)), bloomBitsPerEntry))
	for i := range hashes {
		f.add(&hashes[i])
	}
	return f
}

// bloomBytes is the size of the bit array: ceil(entries × bits / 8).
func bloomBytes(entries, bitsPerEntry uint64) uint64 {
	return (entries*bitsPerEntry + 7) / 8
}

// Len returns the number of entries the filter was built for.
func (f BloomFilter) Len() int { return int(f.entries) }

// probe computes the bit positions of h: three words of the hash, reduced
// modulo the number of bits, combined by the core's double hashing in
// wrapping 32-bit arithmetic. It calls visit for each and stops when visit
// returns false.
func (f *BloomFilter) probe(h *Hash, visit func(p uint32) bool) {
	m := uint32(len(f.bits)) * 8
	x := binary.LittleEndian.Uint32(h[0:4]) % m
	y := binary.LittleEndian.Uint32(h[4:8]) % m
	z := binary.LittleEndian.Uint32(h[8:12]) % m
	if !visit(x) {
		return
	}
	for i := uint32(1); i < f.probes; i++ {
		x = (x + y) % m
		y = (y + z) % m
		if !visit(x) {
			return
		}
	}
}

func (f *BloomFilter) add(h *Hash) {
	f.probe(h, func(p uint32) bool {
		if int(p>>3) < len(f.bits) {
			f.bits[p>>3] |= 1 << (p & 7)
		}
		return true
	})
}

// Contains reports whether h may be in the filter. An empty filter
// contains nothing; a probe beyond the bit array counts as set, as in the
// core.
func (f BloomFilter) Contains(h Hash) bool {
	if f.entries == 0 {
		return false
	}
	in := true
	f.probe(&h, func(p uint32) bool {
		if int(p>>3) < len(f.bits) && f.bits[p>>3]&(1<<(p&7)) == 0 {
			in = false
		}
		return in
	})
	return in
}

// AppendEncoded appends the filter's bytes to b: nothing for an empty
// filter, otherwise LEB128 entries, bits per entry and probes, then the
// bits (bit p is bit p&7 of byte p>>3).
func (f BloomFilter) AppendEncoded(b []byte) []byte {
	if f.entries == 0 {
		return b
	}
	b = leb128.AppendUint(b, uint64(f.entries))
	b = leb128.AppendUint(b, uint64(f.bitsPerEntry))
	b = leb128.AppendUint(b, uint64(f.probes))
	return append(b, f.bits...)
}

// EncodedLen returns the length of the filter's encoding.
func (f BloomFilter) EncodedLen() int {
	if f.entries == 0 {
		return 0
	}
	return ulebLen(uint64(f.entries)) + ulebLen(uint64(f.bitsPerEntry)) + ulebLen(uint64(f.probes)) + len(f.bits)
}

func ulebLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// DecodeBloomFilter decodes a filter as the core's BloomFilter::parse
// does: no bytes is the empty filter; bytes after the bit array are
// ignored. It refuses what would make the core fail (a filter with entries
// but no bits, where every probe divides by zero) and more than 64 probes.
// The result refers to b.
func DecodeBloomFilter(b []byte) (BloomFilter, error) {
	if len(b) == 0 {
		return BloomFilter{}, nil
	}
	r := &reader{b: b}
	f := BloomFilter{entries: r.uleb32(), bitsPerEntry: r.uleb32(), probes: r.uleb32()}
	if r.err != nil {
		return BloomFilter{}, fmt.Errorf("bloom filter: %w", r.err)
	}
	if f.probes > maxBloomProbes {
		return BloomFilter{}, fmt.Errorf("bloom filter with %d probes", f.probes)
	}
	n := bloomBytes(uint64(f.entries), uint64(f.bitsPerEntry))
	if f.entries > 0 && n == 0 {
		return BloomFilter{}, errors.New("bloom filter with entries but no bits")
	}
	f.bits = r.take(n)
	if r.err != nil {
		return BloomFilter{}, fmt.Errorf("bloom filter: %w", r.err)
	}
	return f, nil
}
