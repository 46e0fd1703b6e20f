// Package leb128 writes unsigned LEB128 integers, the variable-length
// integers of Automerge's binary formats (sync messages, change and
// document chunks). Readers stay with their decoders, which each bound
// what they accept.
package leb128

// AppendUint appends v to b as unsigned LEB128: seven bits per byte, least
// significant first, the high bit set on every byte but the last.
func AppendUint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
