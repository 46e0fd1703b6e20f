package room

import (
	"slices"
	"testing"
)

func TestLogPos(t *testing.T) {
	var p logPos
	p.add(1, 3)
	if p.done != 3 || p.gap() {
		t.Fatalf("after 1..3: %+v", p)
	}
	p.add(7, 8)  // 4..6 missing
	p.add(10, 9) // nothing new
	p.add(12, 12)
	if p.done != 3 || !p.gap() || !slices.Equal(p.ahead, []span{{7, 8}, {12, 12}}) {
		t.Fatalf("after 7..8 and 12: %+v", p)
	}
	p.add(5, 6)
	p.add(2, 4) // partly known
	if p.done != 8 || !slices.Equal(p.ahead, []span{{12, 12}}) {
		t.Fatalf("after 2..6: %+v", p)
	}
	p.add(9, 11)
	if p.done != 12 || p.gap() {
		t.Fatalf("after 9..11: %+v", p)
	}
	p.add(20, 25)
	p.add(13, 19)
	if p.done != 25 || p.gap() {
		t.Fatalf("after 13..19: %+v", p)
	}
}
