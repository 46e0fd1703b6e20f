package docjson

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/wire"
)

func TestParseHeads(t *testing.T) {
	t.Parallel()
	var h1, h2, h0 automerge.ChangeHash
	for i := range h1 {
		h1[i] = byte(i)
		h2[i] = byte(255 - i)
	}
	h0[31] = 1 // leading zero bytes become leading '1's
	b1, b2, b0 := wire.EncodeBS58Check(h1[:]), wire.EncodeBS58Check(h2[:]), wire.EncodeBS58Check(h0[:])
	if !strings.HasPrefix(b0, strings.Repeat("1", 31)) {
		t.Fatalf("encoder: %s", b0)
	}
	// A bs58check document ID (16-byte payload), as automerge-repo makes them.
	docID := "4NMNnkMhL8jXrdJ9jamS58PAVdXu"
	corrupt := []byte(b1)
	corrupt[5] = map[bool]byte{true: '2', false: '3'}[corrupt[5] != '2']

	tests := []struct {
		in      string
		want    []automerge.ChangeHash
		wantErr bool
	}{
		{in: h1.String(), want: []automerge.ChangeHash{h1}},
		{in: strings.ToUpper(h1.String()), want: []automerge.ChangeHash{h1}},
		{in: b1, want: []automerge.ChangeHash{h1}},
		{in: b0, want: []automerge.ChangeHash{h0}},
		{in: h1.String() + "," + h2.String(), want: []automerge.ChangeHash{h1, h2}},
		{in: b1 + "|" + b2, want: []automerge.ChangeHash{h1, h2}},
		{in: " " + b2 + " , " + h1.String() + " ", want: []automerge.ChangeHash{h2, h1}},
		{in: h1.String() + "|" + b1, want: []automerge.ChangeHash{h1}},
		{in: "", wantErr: true},
		{in: "  ", wantErr: true},
		{in: h1.String() + ",", wantErr: true},
		{in: h1.String() + ",," + h2.String(), wantErr: true},
		{in: "|" + b1, wantErr: true},
		{in: strings.Repeat("g", 64), wantErr: true},
		{in: h1.String()[:62], wantErr: true},
		{in: string(corrupt), wantErr: true},
		{in: "0" + b1[1:], wantErr: true},
		{in: docID, wantErr: true},
		{in: "1111", wantErr: true},
		{in: strings.Repeat("z", 100), wantErr: true},
		{in: strings.TrimSuffix(strings.Repeat(h1.String()+",", MaxHeads+1), ","), wantErr: true},
	}
	for _, tc := range tests {
		name := tc.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseHeads(tc.in)
			if tc.wantErr {
				if !errors.Is(err, ErrBadHeads) {
					t.Fatalf("ParseHeads(%q) = %v, %v; want ErrBadHeads", tc.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseHeads(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestParseHeadsRenderAt(t *testing.T) {
	t.Parallel()
	doc := automerge.New()
	h, err := SetRoot(doc, raw(`{"v":1}`), "")
	must(t, err)
	_, err = Apply(doc, []Op{{Op: "set", Path: raw(`["v"]`), Value: raw(`2`)}}, "")
	must(t, err)
	heads, err := ParseHeads("automerge-style " + wire.EncodeBS58Check(h[:]))
	if err == nil {
		t.Fatalf("ParseHeads accepted a prefix: %v", heads)
	}
	heads, err = ParseHeads(wire.EncodeBS58Check(h[:]))
	must(t, err)
	v, err := RenderAt(doc, heads)
	must(t, err)
	if v["v"] != int64(1) {
		t.Fatalf("at %s: %v", h, v)
	}
}

func FuzzParseHeads(f *testing.F) {
	var h automerge.ChangeHash
	f.Add(h.String())
	f.Add(wire.EncodeBS58Check(h[:]) + "|" + h.String())
	f.Add("1,2|3")
	f.Fuzz(func(t *testing.T, s string) {
		heads, err := ParseHeads(s)
		if err != nil {
			if !errors.Is(err, ErrBadHeads) {
				t.Fatalf("error %v does not wrap ErrBadHeads", err)
			}
			return
		}
		if len(heads) == 0 {
			t.Fatalf("no heads and no error for %q", s)
		}
	})
}
