package wire

// SizeHint estimates the length of a whole frame from its first bytes, for
// reading a large frame into one buffer of the right size instead of one
// that grows by doubling (and, for a frame over the limit, for refusing it
// before reading it). It walks the top-level map of prefix; the first byte
// string whose declared length runs past the prefix (a sync message's data,
// say) gives the estimate: where that string ends, plus slack for the
// small fields that may follow it. ok is false when prefix does not look
// like a message whose size can be told this way.
func SizeHint(prefix []byte) (size int, ok bool) {
	const slack = 512
	if len(prefix) == 0 || prefix[0]>>5 != 5 {
		return 0, false
	}
	off, pairs, err := head(prefix)
	if err != nil || prefix[0]&0x1f == 31 {
		pairs = 1 << 20 // indefinite: until the break byte
	}
	for i := uint64(0); i < 2*pairs && off < len(prefix); i++ {
		if prefix[off] == 0xff {
			return 0, false // the map ended within the prefix
		}
		for off < len(prefix) && prefix[off]>>5 == 6 { // tags
			n, _, err := head(prefix[off:])
			if err != nil {
				return 0, false
			}
			off += n
		}
		if off >= len(prefix) {
			return 0, false
		}
		n, arg, err := head(prefix[off:])
		if err != nil {
			return 0, false
		}
		switch major := prefix[off] >> 5; {
		case (major == 2 || major == 3) && prefix[off]&0x1f != 31:
			end := uint64(off+n) + arg
			if end > uint64(len(prefix)) && major == 3 {
				return 0, false // cut inside a short field: no estimate yet
			}
			if end > uint64(len(prefix)) {
				if end > 1<<40 {
					return 1 << 40, true // absurd: surely over any limit
				}
				return int(end) + slack, true
			}
			off = int(end)
		case major <= 1 || major == 7:
			off += n
		default:
			return 0, false // nested arrays and maps: not worth walking
		}
	}
	return 0, false
}
