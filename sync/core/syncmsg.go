package core

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-sync/tandem/internal/leb128"
)

// The Automerge core this server links (automerge-go, Rust core 0.5.0) is
// built with panic=abort: a panic inside it kills the whole process. Some
// malformed sync messages make it panic (found by FuzzReceive: a change
// whose seq skips ahead of its actor's history passes the core's checks and
// later makes GenerateMessage index out of range; a Bloom filter with
// entries but no bits divides by zero; FuzzReceiveChange found op columns
// that abort it, such as a map key in a list). So every message from a
// peer is parsed here first, with its changes decoded in full, and the
// changes are validated (validate.go) before the core sees any of it. The
// format is SYNC-ALGORITHM.md §1.

// Limits on what a peer's sync message may contain, far above what stock
// clients send (one have entry, 7 probes, 10 bits per entry).
const (
	maxHaveEntries = 64
	maxBloomProbes = 64
	maxBloomBits   = 64
	maxActorLen    = 128
)

var errShort = errors.New("truncated")

// The first byte of a sync message.
const (
	msgV1 = 0x42
	msgV2 = 0x43
)

// syncMessage is a parsed sync message; its changes are decoded in full
// (their ops are decoded when they are validated).
type syncMessage struct {
	heads   []Hash
	need    []Hash
	haves   []have
	changes []*changeChunk
	trailer Trailer
}

// Flags are the bits of a flags trailer, the extension of the sync message
// that Automerge 0.9 (@automerge/automerge 3.2.6) introduced
// (SYNC-ALGORITHM.md §1.4). A peer sets them about itself.
type Flags uint8

// The flags a trailer can carry.
const (
	// FlagSyncReset: the sender lost track of what it sent; the receiver
	// should forget what it believes the sender has.
	FlagSyncReset Flags = 0x01
	// FlagReadOnly: the sender does not apply the receiver's changes, so
	// the receiver sends it none.
	FlagReadOnly Flags = 0x02
	// FlagSupportsSyncReset: the sender understands FlagSyncReset.
	FlagSupportsSyncReset Flags = 0x04
)

// Trailer is what a sync message carries after its changes list: nothing
// (cores before 0.5.4, automerge-go), a capabilities list (0.5.4–0.8,
// "02 01 02"), or flags (0.9+, "02 02 84"). Every byte of it with the high
// bit set contributes its low 7 bits to the flags, as the 0.9 core reads
// it.
type Trailer struct {
	// Present: the message has a trailer at all. To a 0.5.4+ peer, any
	// trailer also means that the sender accepts V2 messages.
	Present bool
	// HasFlags: the trailer holds flags, so the sender's core understands
	// them (FlagReadOnly among them).
	HasFlags bool
	Flags    Flags
}

// readTrailer reads the trailer from what follows a message's changes
// list: a LEB128 length and that many bytes, then anything (ignored, as
// every core does). A trailer whose length does not fit is no trailer: the
// cores this server serves ignore what they cannot read there.
func readTrailer(rest []byte) Trailer {
	if len(rest) == 0 {
		return Trailer{}
	}
	r := &reader{b: rest}
	body := r.take(r.uleb())
	if r.err != nil {
		return Trailer{}
	}
	t := Trailer{Present: true}
	for _, b := range body {
		if b&0x80 != 0 {
			t.HasFlags = true
			t.Flags |= Flags(b & 0x7f)
		}
	}
	return t
}

// appendTrailer writes a flags trailer as the 0.9 core does: its length,
// the legacy MessageV2 capability byte, and the flags with the high bit
// set.
func appendTrailer(b []byte, f Flags) []byte {
	return append(b, 0x02, 0x02, 0x80|byte(f))
}

// WithFlags returns msg, a V1 message as SyncState.Generate makes it
// (without a trailer: the 0.5 core never writes one), with a flags trailer
// carrying f. Send it only to a peer whose own messages carry flags
// (Trailer.HasFlags): any trailer makes a 0.5.4+ peer take the sender for
// V2-capable, and a peer that does not understand flags would send V2
// messages, which only ReadOnlyV1 accepts, and only without changes.
func WithFlags(msg []byte, f Flags) []byte {
	return appendTrailer(slices.Clip(msg), f)
}

// walkMessage reads a message's structure up to the trailer without decoding its
// changes: its version byte, the fields before the changes, how many
// changes it carries, and the trailer.
func walkMessage(msg []byte) (version byte, m syncMessage, changes uint64, err error) {
	r := &reader{b: msg}
	version = r.byte()
	if r.err == nil && version != msgV1 && version != msgV2 {
		return version, m, 0, fmt.Errorf("unknown sync message type 0x%02x", version)
	}
	m.heads = r.hashes()
	m.need = r.hashes()
	haves := r.uleb()
	if haves > maxHaveEntries {
		return version, m, 0, fmt.Errorf("%d have entries", haves)
	}
	for i := uint64(0); i < haves && r.err == nil; i++ {
		h := have{lastSync: r.hashes()}
		h.bloom = r.take(r.uleb())
		if err := checkBloom(h.bloom); err != nil {
			return version, m, 0, err
		}
		m.haves = append(m.haves, h)
	}
	changes = r.uleb()
	if r.err == nil && changes > uint64(len(r.b)) {
		r.fail(errShort)
	}
	for i := uint64(0); i < changes && r.err == nil; i++ {
		r.take(r.uleb())
	}
	if r.err != nil {
		return version, m, 0, r.err
	}
	m.trailer = readTrailer(r.b)
	return version, m, changes, nil
}

// ReadTrailer returns the trailer of a V1 or V2 sync message, checking
// only the structure in front of it (not the changes).
func ReadTrailer(msg []byte) (Trailer, error) {
	_, m, _, err := walkMessage(msg)
	if err != nil {
		return Trailer{}, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	}
	return m.trailer, nil
}

// ReadOnlyV1 returns msg as SyncState.ReceiveReadOnly takes it: a V1
// message as it is, and a V2 message as the V1 message with the same
// heads, need and have and no changes, which a read-only peer's are
// dropped anyway (V2 changes may be whole documents, which the 0.5 core
// cannot read). It reports whether msg carried changes. A peer sends V2
// once it has seen a trailer from the server (WithFlags); a peer that
// understands FlagReadOnly then sends no changes at all.
func ReadOnlyV1(msg []byte) (v1 []byte, hadChanges bool, err error) {
	version, m, changes, err := walkMessage(msg)
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("%w: %w", ErrBadSyncMessage, err)
	case version == msgV1:
		return msg, changes > 0, nil
	}
	return m.encodeWithoutChanges(), changes > 0, nil
}

// have is one entry of a sync message's have list.
type have struct {
	lastSync []Hash
	bloom    []byte // as sent
}

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

// uleb reads an unsigned LEB128 number, rejecting overlong encodings and
// values over 64 bits, as the core does.
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
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) hashes() []Hash {
	n := r.uleb()
	if r.err != nil || n > uint64(len(r.b))/32 {
		r.fail(errShort)
		return nil
	}
	out := make([]Hash, n)
	for i := range out {
		copy(out[i][:], r.take(32))
	}
	return out
}

// parseSyncMessage checks a V1 sync message's structure and decodes the
// changes it carries, refusing more than lim.MaxOpsPerMessage ops in all.
func parseSyncMessage(b []byte, lim *Limits) (syncMessage, error) {
	r := &reader{b: b}
	var m syncMessage
	switch v := r.byte(); {
	case r.err != nil:
		return m, r.err
	case v == msgV2:
		return m, errors.New("V2 sync messages are not supported (this server never advertises them)")
	case v != msgV1:
		return m, fmt.Errorf("unknown sync message type 0x%02x", v)
	}
	m.heads = r.hashes()
	m.need = r.hashes()
	haves := r.uleb()
	if haves > maxHaveEntries {
		return m, fmt.Errorf("%d have entries", haves)
	}
	for range haves {
		h := have{lastSync: r.hashes()}
		h.bloom = r.take(r.uleb())
		if err := checkBloom(h.bloom); err != nil {
			return m, err
		}
		m.haves = append(m.haves, h)
	}
	n := r.uleb()
	if r.err == nil && n > uint64(len(r.b)) {
		r.fail(errShort)
	}
	ops := uint64(0)
	for i := uint64(0); i < n && r.err == nil; i++ {
		raw := r.take(r.uleb())
		if r.err != nil {
			break
		}
		c, err := parseCounted(raw, int(i), lim, &ops)
		if err != nil {
			return m, err
		}
		m.changes = append(m.changes, c)
	}
	// What follows is a capabilities or flags trailer, or nothing. The 0.5
	// core ignores it; the trailer is read for what it says about the
	// peer (Trailer), and junk after it is ignored, as every core does.
	if r.err == nil {
		m.trailer = readTrailer(r.b)
	}
	return m, r.err
}

// parseCounted parses change i of a message or batch whose changes so far
// hold *ops ops, refusing it when it would take them past
// Limits.MaxOpsPerMessage, and adds its ops to *ops.
func parseCounted(raw []byte, i int, lim *Limits, ops *uint64) (*changeChunk, error) {
	c, err := parseChange(raw, lim)
	if err == nil && c.numOps > uint64(lim.MaxOpsPerMessage)-*ops {
		err = fmt.Errorf("%w: more than %d ops in one message", ErrLimitExceeded, lim.MaxOpsPerMessage)
	}
	if err != nil {
		var h Hash
		if c != nil {
			h = c.hash
		}
		return nil, invalid(i, h, err)
	}
	*ops += c.numOps
	return c, nil
}

func checkBloom(b []byte) error {
	if len(b) == 0 {
		return nil // the empty filter
	}
	r := &reader{b: b}
	entries, bitsPer, probes := r.uleb(), r.uleb(), r.uleb()
	if r.err != nil {
		return fmt.Errorf("bloom filter: %w", r.err)
	}
	if entries > 1<<32-1 || bitsPer > maxBloomBits || probes > maxBloomProbes {
		return fmt.Errorf("bloom filter parameters out of range (%d entries, %d bits each, %d probes)", entries, bitsPer, probes)
	}
	capacity := (entries*bitsPer + 7) / 8
	if entries > 0 && capacity == 0 {
		return errors.New("bloom filter with entries but no bits")
	}
	if capacity > uint64(len(r.b)) {
		return errors.New("bloom filter shorter than its parameters say")
	}
	return nil
}

var chunkMagic = [4]byte{0x85, 0x6f, 0x4a, 0x83}

// chunk is one Automerge storage chunk as framed on the wire.
type chunk struct {
	typ  byte
	sum  []byte // the 4-byte checksum as sent
	hash Hash   // sha256(type ‖ LEB128 length ‖ data); a change's hash
	data []byte
}

// readChunk reads one chunk (magic, checksum, type, LEB128 length, data)
// from r.
func readChunk(r *reader) (chunk, error) {
	var c chunk
	if magic := r.take(4); r.err != nil || [4]byte(magic) != chunkMagic {
		return c, errors.New("not an Automerge chunk")
	}
	c.sum = r.take(4)
	c.typ = r.byte()
	start := r.b // from the length on, for the hash
	length := r.uleb()
	c.data = r.take(length)
	if r.err != nil {
		return c, fmt.Errorf("chunk: %w", r.err)
	}
	h := sha256.New()
	h.Write([]byte{c.typ})
	h.Write(start[:len(start)-len(r.b)])
	copy(c.hash[:], h.Sum(nil))
	return c, nil
}

// parseChange decodes one change chunk of a sync message. Only
// uncompressed change chunks are accepted there: the 0.5 core cannot read
// compressed or document chunks in a sync message, and no peer sends them
// to a server that does not advertise V2 messages.
func parseChange(b []byte, lim *Limits) (*changeChunk, error) {
	r := &reader{b: b}
	ch, err := readChunk(r)
	if err != nil {
		return nil, err
	}
	if ch.typ != chunkChange {
		return nil, fmt.Errorf("chunk type %d: only uncompressed change chunks are accepted", ch.typ)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the change", len(r.b))
	}
	return decodeChange(ch, b, lim)
}

// encodeWithoutChanges writes m as a V1 sync message without changes and
// without a trailer (see SYNC-ALGORITHM.md §1.2 and §1.4).
func (m syncMessage) encodeWithoutChanges() []byte { return m.encode(nil) }

// encode writes m as a V1 sync message carrying the given change chunks,
// without a trailer.
func (m syncMessage) encode(changes []*changeChunk) []byte {
	b := []byte{msgV1}
	b = appendHashes(b, m.heads)
	b = appendHashes(b, m.need)
	b = leb128.AppendUint(b, uint64(len(m.haves)))
	for _, h := range m.haves {
		b = appendHashes(b, h.lastSync)
		b = leb128.AppendUint(b, uint64(len(h.bloom)))
		b = append(b, h.bloom...)
	}
	b = leb128.AppendUint(b, uint64(len(changes)))
	for _, c := range changes {
		b = leb128.AppendUint(b, uint64(len(c.raw)))
		b = append(b, c.raw...)
	}
	return b
}

func appendHashes(b []byte, hs []Hash) []byte {
	b = leb128.AppendUint(b, uint64(len(hs)))
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// askForPending rewrites a message the core generated so that it asks the
// peer for what the peer's held changes depend on, as the 0.5 core's
// get_missing_deps does for the changes in its own queue (which Tandem
// keeps empty): the need list becomes the peer's heads the document lacks,
// less the held changes, plus the held changes' dependencies that nothing
// holds; and, as in the core, the Bloom filter is left out when the need
// list asks for more than the peer's heads. Unlike 0.5, only this peer's
// held changes count (0.11 fixed the stall that asking one peer for
// another's dependencies causes). A reset message is left as it is.
func (s *SyncState) askForPending(msg []byte) []byte {
	d := s.doc
	if len(d.pending.m) == 0 || (s.theirHave && len(d.known(s.theirLastSync)) != len(s.theirLastSync)) {
		return msg
	}
	r := &reader{b: msg}
	if r.byte() != msgV1 {
		return msg
	}
	r.hashes() // our heads
	headsEnd := len(msg) - len(r.b)
	need := r.hashes()
	needEnd := len(msg) - len(r.b)
	for n := r.uleb(); n > 0 && r.err == nil; n-- {
		r.hashes()
		r.take(r.uleb())
	}
	if r.err != nil {
		return msg
	}
	havesEnd := len(msg) - len(r.b)
	want := map[Hash]bool{}
	for _, h := range need {
		if !d.pending.has(h) {
			want[h] = true
		}
	}
	for _, pc := range d.pending.m {
		if pc.from != any(s) {
			continue
		}
		for _, h := range pc.c.deps {
			if !d.pending.has(h) && !d.Has(h) {
				want[h] = true
			}
		}
	}
	newNeed := make([]Hash, 0, len(want))
	for h := range want {
		newNeed = append(newNeed, h)
	}
	slices.SortFunc(newNeed, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	if slices.Equal(newNeed, need) {
		return msg
	}
	theirs := map[Hash]bool{}
	for _, h := range s.theirHeads {
		theirs[h] = true
	}
	keepHave := true
	for _, h := range newNeed {
		keepHave = keepHave && theirs[h]
	}
	out := append([]byte{}, msg[:headsEnd]...)
	out = appendHashes(out, newNeed)
	if keepHave {
		out = append(out, msg[needEnd:havesEnd]...)
	} else {
		out = leb128.AppendUint(out, 0)
	}
	return append(out, msg[havesEnd:]...)
}
