package wire

import (
	"strings"
	"testing"
)

func TestExcerpt(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 79) + "éé"
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{strings.Repeat("x", 80), strings.Repeat("x", 80)},
		{strings.Repeat("x", 81), strings.Repeat("x", 80) + "…"},
		{long, strings.Repeat("a", 79) + "…"}, // é would be cut in half at 80 bytes
	} {
		if got := Excerpt(tt.in); got != tt.want {
			t.Errorf("Excerpt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
