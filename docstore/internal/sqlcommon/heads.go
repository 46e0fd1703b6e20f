package sqlcommon

import (
	"fmt"

	"github.com/tandem-sync/tandem/sync/core"
)

// EncodeHeads packs change hashes into one byte string, as both stores
// keep a snapshot's heads.
func EncodeHeads(heads []core.Hash) []byte {
	b := make([]byte, 0, len(heads)*len(core.Hash{}))
	for _, h := range heads {
		b = append(b, h[:]...)
	}
	return b
}

// DecodeHeads unpacks what EncodeHeads packed.
func DecodeHeads(b []byte) ([]core.Hash, error) {
	const n = len(core.Hash{})
	if len(b)%n != 0 {
		return nil, fmt.Errorf("snapshot heads are %d bytes, not a multiple of %d", len(b), n)
	}
	if len(b) == 0 {
		return nil, nil
	}
	heads := make([]core.Hash, len(b)/n)
	for i := range heads {
		copy(heads[i][:], b[i*n:])
	}
	return heads, nil
}
