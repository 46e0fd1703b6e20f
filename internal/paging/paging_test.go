package paging

import "testing"

func TestClamp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want int }{
		{-1, MaxLimit}, {0, MaxLimit}, {1, 1}, {DefaultLimit, DefaultLimit}, {MaxLimit, MaxLimit}, {MaxLimit + 1, MaxLimit},
	} {
		if got := Clamp(tt.in); got != tt.want {
			t.Errorf("Clamp(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
