package engine

import (
	"bytes"
	"errors"
	"slices"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// Primitives of the sync message and chunk formats (SYNC-ALGORITHM.md
// §1.1): unsigned and signed LEB128, and hash lists.

var errShort = errors.New("not enough input")

// reader reads from b; the first error sticks and later reads return zero
// values.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail(errShort)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// uleb reads an unsigned LEB128 number, refusing overlong encodings and
// values over 64 bits as the core's parser does.
func (r *reader) uleb() uint64 {
	var v uint64
	for shift := 0; ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c > 1 {
			r.fail(errors.New("LEB128 value overflows 64 bits"))
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if c == 0 && shift > 0 {
				r.fail(errors.New("overlong LEB128"))
				return 0
			}
			return v
		}
	}
}

// uleb32 reads an unsigned LEB128 number that must fit in 32 bits.
func (r *reader) uleb32() uint32 {
	v := r.uleb()
	if v > 1<<32-1 {
		r.fail(errors.New("LEB128 value overflows 32 bits"))
		return 0
	}
	return uint32(v)
}

// sleb reads a signed LEB128 number (64 bits at most).
func (r *reader) sleb() int64 {
	var v int64
	for shift := 0; ; shift += 7 {
		c := r.byte()
		if r.err != nil {
			return 0
		}
		if shift == 63 && c != 0 && c != 0x7f {
			r.fail(errors.New("LEB128 value overflows 64 bits"))
			return 0
		}
		v |= int64(c&0x7f) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			return v
		}
	}
}

func (r *reader) take(n uint64) []byte {
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail(errShort)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// hashes reads a hash list: a count, then that many 32-byte hashes.
func (r *reader) hashes() []Hash {
	n := r.uleb()
	if r.err != nil || n > uint64(len(r.b))/32 {
		r.fail(errShort)
		return nil
	}
	if n == 0 {
		return nil
	}
	out := make([]Hash, n)
	for i := range out {
		copy(out[i][:], r.b[32*i:])
	}
	r.b = r.b[32*n:]
	return out
}

// actor reads a length-prefixed actor ID.
func (r *reader) actor() []byte {
	n := r.uleb()
	if r.err == nil && (n == 0 || n > maxActorLen) {
		r.fail(errors.New("bad actor ID length"))
		return nil
	}
	return r.take(n)
}

func appendHashes(b []byte, hs []Hash) []byte {
	b = leb128.AppendUint(b, uint64(len(hs)))
	for i := range hs {
		b = append(b, hs[i][:]...)
	}
	return b
}

func compareHash(a, b Hash) int { return bytes.Compare(a[:], b[:]) }

// sortHashes sorts hs bytewise and removes duplicates, in place.
func sortHashes(hs []Hash) []Hash {
	if len(hs) < 2 {
		return hs
	}
	if !slices.IsSortedFunc(hs, compareHash) {
		slices.SortFunc(hs, compareHash)
	}
	return slices.Compact(hs)
}
