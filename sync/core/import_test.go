package core

import (
	"bytes"
	"compress/flate"
	"errors"
	"slices"
	"testing"
)

func TestImport(t *testing.T) {
	base := baseChange()
	set := changeB(changeOp{obj: ref{1, 1}, key: prop("k"), action: actSet, val: vStr("w"), preds: []ref{{1, 7}}})

	t.Run("a document into an empty one", func(t *testing.T) {
		d := NewDoc()
		if err := d.Import(baseDoc(t).Save()); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Heads(), []Hash{base.hash()}) {
			t.Fatal("heads differ")
		}
		// The index knows the imported objects.
		accept(t, d, set.chunk())
	})
	t.Run("changes on top of the document", func(t *testing.T) {
		d := baseDoc(t)
		if err := d.Import(set.chunk()); err != nil {
			t.Fatal(err)
		}
		if !d.Has(set.hash()) {
			t.Fatal("not applied")
		}
	})
	t.Run("a document with changes after it", func(t *testing.T) {
		d := NewDoc()
		if err := d.Import(append(baseDoc(t).Save(), set.chunk()...)); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(d.Heads(), []Hash{set.hash()}) {
			t.Fatal("heads differ")
		}
	})
	t.Run("a compressed change", func(t *testing.T) {
		d := baseDoc(t)
		body := set.compressed(t)
		hs, err := ChunkHashes(body)
		if err != nil || !slices.Equal(hs, []Hash{set.hash()}) {
			t.Fatalf("ChunkHashes: %x, %v", hs, err)
		}
		if err := d.Import(body); err != nil {
			t.Fatal(err)
		}
		if !d.Has(set.hash()) {
			t.Fatal("not applied")
		}
	})
	t.Run("missing dependencies", func(t *testing.T) {
		var mde *MissingDepsError
		if err := NewDoc().Import(set.chunk()); !errors.As(err, &mde) || mde.Change != set.hash() ||
			!slices.Equal(mde.Missing, []Hash{base.hash()}) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("nothing applied unless all passes", func(t *testing.T) {
		d := baseDoc(t)
		bad := changeB(changeOp{obj: ref{1, 2}, key: prop("p"), action: actSet, val: vInt(1)})
		bad.seq, bad.startOp, bad.deps = 2, 9, []Hash{set.hash()}
		var ice *InvalidChangeError
		if err := d.Import(append(set.chunk(), bad.chunk()...)); !errors.As(err, &ice) || ice.Index != 1 {
			t.Fatalf("got %v", err)
		}
		if d.Has(set.hash()) {
			t.Fatal("part of a refused import was applied")
		}
	})
	t.Run("type confusion needs the document", func(t *testing.T) {
		// A map key into the document's list: ChunkHashes, without the
		// document, cannot tell (the list is not in the body); Import can.
		confused := changeB(changeOp{obj: ref{1, 2}, key: prop("p"), action: actSet, val: vInt(1)})
		if _, err := ChunkHashes(confused.chunk()); err != nil {
			t.Fatalf("ChunkHashes: %v", err)
		}
		if err := baseDoc(t).Import(confused.chunk()); err == nil {
			t.Fatal("Import accepted a map key into a list")
		}
		// With the list in the body, ChunkHashes refuses it too.
		if _, err := ChunkHashes(append(baseDoc(t).Save(), confused.chunk()...)); err == nil {
			t.Fatal("ChunkHashes accepted a map key into the body's own list")
		}
	})
	t.Run("inflation bomb", func(t *testing.T) {
		var buf bytes.Buffer
		w, _ := flate.NewWriter(&buf, flate.BestCompression)
		w.Write(make([]byte, 300<<20))
		w.Close()
		bomb := frameChunk(chunkCompressed, buf.Bytes())
		if _, err := ChunkHashes(bomb); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("ChunkHashes: %v", err)
		}
		if err := baseDoc(t).Import(bomb); !errors.Is(err, ErrLimitExceeded) {
			t.Fatalf("Import: %v", err)
		}
	})
	t.Run("garbage", func(t *testing.T) {
		for _, body := range [][]byte{nil, []byte("garbage"), base.chunk()[:20], append(base.chunk(), 1)} {
			if err := NewDoc().Import(body); err == nil {
				t.Errorf("Import(%x) accepted garbage", body)
			}
			if _, err := ChunkHashes(body); err == nil {
				t.Errorf("ChunkHashes(%x) accepted garbage", body)
			}
		}
	})
}

// TestLoadRefusesBadLogs: Load validates what a store returns, and
// refuses (with an *InvalidChangeError) rather than let the core see a
// change that would crash it.
func TestLoadRefusesBadLogs(t *testing.T) {
	confused := changeB(changeOp{obj: ref{1, 2}, key: prop("p"), action: actSet, val: vInt(1)})
	var ice *InvalidChangeError
	if _, err := Load(nil, [][]byte{baseChange().chunk(), confused.chunk()}); !errors.As(err, &ice) {
		t.Fatalf("got %v", err)
	}
	if _, err := Load(baseDoc(t).Save(), [][]byte{confused.chunk()}); !errors.As(err, &ice) {
		t.Fatalf("got %v", err)
	}
	if _, err := Load([]byte("not a snapshot"), nil); err == nil {
		t.Fatal("accepted a bad snapshot")
	}
	// Stored changes are held to the safety rules, not to canonical form.
	odd := changeB(changeOp{key: prop("a"), action: actSet, val: vStr("xy")}, changeOp{key: prop("b"), action: actSet, val: vStr("xy")})
	odd.cols = colEdit(66, func([]byte) []byte { return []byte{0x7e, 1, 1} })
	if _, err := Load(nil, [][]byte{baseChange().chunk(), odd.chunk()}); err != nil {
		t.Fatalf("a non-canonical stored change: %v", err)
	}
}
