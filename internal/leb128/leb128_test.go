package leb128

import (
	"bytes"
	"math"
	"testing"
)

func TestAppendUint(t *testing.T) {
	for _, tt := range []struct {
		v    uint64
		want []byte
	}{
		{0, []byte{0x00}},
		{1, []byte{0x01}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{300, []byte{0xac, 0x02}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{math.MaxUint64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	} {
		if got := AppendUint([]byte{0xee}, tt.v); !bytes.Equal(got, append([]byte{0xee}, tt.want...)) {
			t.Errorf("AppendUint(%d) = %x, want ee%x", tt.v, got, tt.want)
		}
	}
}
