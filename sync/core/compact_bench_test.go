package core

import (
	"testing"

	"github.com/automerge/automerge-go"
)

// BenchmarkCompaction compacts a 100,000-change text (one character per
// change, as typed) from a snapshot of its first change plus the log of the
// others: in Go (Compact, what the compactor runs) and through the Automerge
// core as compaction did before (load the snapshot, apply the log, save,
// load the result to check it; without Tandem's validation, so the core's
// own cost). The ratio of the two is the speed-up.
//
//	go test -run '^$' -bench BenchmarkCompaction -benchtime 5x ./sync/core
func BenchmarkCompaction(b *testing.B) {
	d := automerge.New()
	txt := automerge.NewText("")
	if err := d.RootMap().Set("text", txt); err != nil {
		b.Fatal(err)
	}
	if _, err := d.Commit("init"); err != nil {
		b.Fatal(err)
	}
	snapshot := d.Save()
	log := make([][]byte, 0, 100000)
	for range 100000 {
		if err := txt.Insert(txt.Len(), "x"); err != nil {
			b.Fatal(err)
		}
		h, err := d.Commit("")
		if err != nil {
			b.Fatal(err)
		}
		c, err := d.Change(h)
		if err != nil {
			b.Fatal(err)
		}
		log = append(log, c.Save())
	}
	want := hashes(d.Heads())
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			_, heads, err := Compact(snapshot, log)
			if err != nil || len(heads) != 1 || heads[0] != want[0] {
				b.Fatalf("heads %x, %v", heads, err)
			}
		}
	})
	b.Run("core", func(b *testing.B) {
		var all []byte
		for _, c := range log {
			all = append(all, c...)
		}
		for b.Loop() {
			doc, err := automerge.Load(snapshot)
			if err == nil {
				err = doc.LoadIncremental(all)
			}
			if err != nil {
				b.Fatal(err)
			}
			check, err := automerge.Load(doc.Save())
			if err != nil || hashes(check.Heads())[0] != want[0] {
				b.Fatalf("check: %v", err)
			}
		}
	})
}
