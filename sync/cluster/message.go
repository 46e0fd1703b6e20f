package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// The messages nodes exchange on a document's subject. Binary, versioned:
//
//	version  byte (1)
//	kind     byte (kindChanges, kindDeleted, kindEphemeral)
//	node     uvarint length, bytes: the publishing node's ID
//	then, for kindChanges: first and last (uvarints, the log positions
//	the append gave the new changes), a uvarint count, and each change
//	as a uvarint length and its bytes; for kindEphemeral: the
//	automerge-repo message, CBOR-encoded (sync/wire); for kindDeleted:
//	nothing.
const msgVersion = 1

// kind is what a message says.
type kind byte

const (
	kindChanges   kind = 1
	kindDeleted   kind = 2
	kindEphemeral kind = 3
)

// message is a decoded message.
type message struct {
	kind        kind
	node        string
	first, last int64
	changes     [][]byte
	ephemeral   wire.Message
}

func header(k kind, node string, size int) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(node)+size)
	b = append(b, msgVersion, byte(k))
	b = binary.AppendUvarint(b, uint64(len(node)))
	return append(b, node...)
}

// encodeChanges encodes the changes an append gave the positions
// first..last.
func encodeChanges(node string, changes []core.Change, first, last int64) []byte {
	size := 3 * binary.MaxVarintLen64
	for _, c := range changes {
		size += binary.MaxVarintLen64 + len(c.Data)
	}
	b := header(kindChanges, node, size)
	b = binary.AppendUvarint(b, uint64(max(first, 0)))
	b = binary.AppendUvarint(b, uint64(max(last, 0)))
	b = binary.AppendUvarint(b, uint64(len(changes)))
	for _, c := range changes {
		b = binary.AppendUvarint(b, uint64(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}

func encodeDeleted(node string) []byte { return header(kindDeleted, node, 0) }

func encodeEphemeral(node string, msg wire.Message) ([]byte, error) {
	body, err := wire.Encode(msg)
	if err != nil {
		return nil, fmt.Errorf("encode ephemeral message: %w", err)
	}
	return append(header(kindEphemeral, node, len(body)), body...), nil
}

var errShort = errors.New("truncated")

// decode decodes a message. Change bytes alias b.
func decode(b []byte) (message, error) {
	var m message
	if len(b) < 2 {
		return m, fmt.Errorf("cluster message: %w", errShort)
	}
	if b[0] != msgVersion {
		return m, fmt.Errorf("cluster message: version %d, want %d", b[0], msgVersion)
	}
	m.kind = kind(b[1])
	b = b[2:]
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, errShort
		}
		b = b[n:]
		return v, nil
	}
	bytesOf := func() ([]byte, error) {
		n, err := uv()
		if err != nil || n > uint64(len(b)) {
			return nil, errShort
		}
		out := b[:n:n]
		b = b[n:]
		return out, nil
	}
	node, err := bytesOf()
	if err != nil {
		return m, fmt.Errorf("cluster message: node: %w", err)
	}
	m.node = string(node)
	switch m.kind {
	case kindChanges:
		first, err1 := uv()
		last, err2 := uv()
		n, err3 := uv()
		if err := errors.Join(err1, err2, err3); err != nil || n > uint64(len(b)) {
			return m, fmt.Errorf("cluster message: changes header: %w", errShort)
		}
		m.first, m.last = int64(first), int64(last)
		m.changes = make([][]byte, 0, n)
		for range n {
			c, err := bytesOf()
			if err != nil {
				return m, fmt.Errorf("cluster message: change: %w", err)
			}
			m.changes = append(m.changes, c)
		}
	case kindDeleted:
	case kindEphemeral:
		msg, err := wire.Decode(b)
		if err != nil {
			return m, fmt.Errorf("cluster message: ephemeral: %w", err)
		}
		m.ephemeral = msg
	default:
		return m, fmt.Errorf("cluster message: unknown kind %d", m.kind)
	}
	return m, nil
}
