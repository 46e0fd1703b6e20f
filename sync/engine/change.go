package engine

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"

	"github.com/tandem-sync/tandem/sync/core"
)

// Hash is a change hash: the SHA-256 of a change chunk from its type byte
// on. It is core.Hash, so hashes pass between a room's packages unchanged.
type Hash = core.Hash

// Change is one change chunk with the header fields the sync protocol and
// the Graph use. The op columns are not decoded: validating them is the
// job of sync/core, before a change reaches a Document.
type Change struct {
	Hash    Hash
	Deps    []Hash // as the chunk lists them (sorted, for stock encoders)
	Actor   []byte
	Seq     uint64
	StartOp uint64
	NumOps  uint64 // entries of the action column
	Raw     []byte // the whole uncompressed change chunk, as hashed
}

// ErrBadChange is wrapped by errors for bytes that are not a change chunk.
var ErrBadChange = errors.New("invalid change chunk")

// Chunk framing (SYNC-ALGORITHM.md §1.1).
const (
	chunkMagic = "\x85\x6f\x4a\x83"

	chunkDocument   = 0
	chunkChange     = 1
	chunkCompressed = 2

	// actionSpec is the column specification of a change's action column
	// (column 4, unsigned integers, not deflated).
	actionSpec = 4<<4 | 2
	// maxActorLen bounds actor IDs (stock clients use 16 bytes).
	maxActorLen = 128
)

// ParseChange decodes the header of one uncompressed change chunk: its
// hash (checked against the chunk's checksum), deps, actor, seq, start op,
// and the number of its ops. raw must be exactly the chunk; Change.Raw
// refers to it (no copy).
func ParseChange(raw []byte) (*Change, error) {
	c, rest, err := parseChunk(raw)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the chunk", ErrBadChange, len(rest))
	}
	return c, nil
}

// parseChunk decodes the change chunk at the start of b and returns what
// follows it.
func parseChunk(b []byte) (*Change, []byte, error) {
	r := &reader{b: b}
	if magic := r.take(4); r.err != nil || string(magic) != chunkMagic {
		return nil, nil, fmt.Errorf("%w: no chunk magic", ErrBadChange)
	}
	sum := r.take(4)
	typ := r.byte()
	hashed := r.b // from the length on
	data := r.take(r.uleb())
	if r.err != nil {
		return nil, nil, fmt.Errorf("%w: chunk: %w", ErrBadChange, r.err)
	}
	switch typ {
	case chunkChange:
	case chunkDocument:
		return nil, nil, fmt.Errorf("%w: a document chunk where a change was expected", ErrBadChange)
	case chunkCompressed:
		return nil, nil, fmt.Errorf("%w: compressed change chunks are not accepted in sync messages", ErrBadChange)
	default:
		return nil, nil, fmt.Errorf("%w: chunk type %d", ErrBadChange, typ)
	}
	n := len(b) - len(r.b)
	c := &Change{Raw: b[:n:n]}
	h := sha256.New()
	h.Write([]byte{typ})
	h.Write(hashed[:len(hashed)-len(r.b)])
	h.Sum(c.Hash[:0])
	if string(c.Hash[:4]) != string(sum) {
		return nil, nil, fmt.Errorf("%w: bad checksum", ErrBadChange)
	}
	if err := c.parseHeader(data); err != nil {
		return nil, nil, fmt.Errorf("%w: %x: %w", ErrBadChange, c.Hash[:4], err)
	}
	return c, r.b, nil
}

// parseHeader reads a change's data: deps, actor, seq, start op, time,
// message, other actors, then the column metadata, to count the ops from
// the action column (storage/change.rs in the Rust core).
func (c *Change) parseHeader(data []byte) error {
	r := &reader{b: data}
	c.Deps = r.hashes()
	c.Actor = r.actor()
	c.Seq = r.uleb()
	c.StartOp = r.uleb()
	r.sleb() // time
	r.take(r.uleb())
	others := r.uleb()
	if r.err == nil && others > uint64(len(r.b)) {
		return fmt.Errorf("%d other actors in %d bytes", others, len(r.b))
	}
	for i := uint64(0); i < others && r.err == nil; i++ {
		r.actor()
	}
	ncols := r.uleb()
	if r.err == nil && ncols > uint64(len(r.b))/2 {
		return fmt.Errorf("%d columns in %d bytes", ncols, len(r.b))
	}
	var offset, actionOff, actionLen uint64
	found := false
	for i := uint64(0); i < ncols && r.err == nil; i++ {
		spec, length := r.uleb(), r.uleb()
		if spec == actionSpec {
			found, actionOff, actionLen = true, offset, length
		}
		if length > uint64(len(data)) || offset+length > uint64(len(data)) {
			return fmt.Errorf("column of %d bytes does not fit", length)
		}
		offset += length
	}
	if r.err != nil {
		return fmt.Errorf("header: %w", r.err)
	}
	if offset > uint64(len(r.b)) {
		return fmt.Errorf("columns of %d bytes in %d", offset, len(r.b))
	}
	if c.Seq == 0 {
		return errors.New("change with seq 0")
	}
	if c.StartOp == 0 {
		return errors.New("change with start op 0")
	}
	if found {
		n, err := countUintRLE(r.b[actionOff : actionOff+actionLen])
		if err != nil {
			return fmt.Errorf("action column: %w", err)
		}
		c.NumOps = n
	}
	if c.StartOp > math.MaxUint32 || c.NumOps > math.MaxUint32 || c.StartOp+c.NumOps > math.MaxUint32+1 {
		return fmt.Errorf("op counters from %d for %d ops overflow 32 bits", c.StartOp, c.NumOps)
	}
	return nil
}

// countUintRLE counts the entries (nulls included) of an RLE column of
// unsigned integers: a positive count n and one value repeated n times, a
// negative count -n and n literal values, or zero and a count of nulls.
func countUintRLE(b []byte) (uint64, error) {
	r := &reader{b: b}
	var total uint64
	for len(r.b) > 0 && r.err == nil {
		var k uint64
		switch n := r.sleb(); {
		case n > 0:
			k = uint64(n)
			r.uleb()
		case n < 0:
			k = uint64(-(n + 1)) + 1
			if k > uint64(len(r.b)) {
				return 0, errShort
			}
			for j := uint64(0); j < k; j++ {
				r.uleb()
			}
		default:
			k = r.uleb()
		}
		if k > math.MaxUint32-total {
			return 0, errors.New("more than 2^32 ops")
		}
		total += k
	}
	return total, r.err
}
