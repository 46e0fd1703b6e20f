package engine

import (
	"testing"
)

// FuzzReceive feeds arbitrary bytes to a session of a small document:
// decoding, applying and generating must never panic, and a message that
// is refused must leave the document as it was.
func FuzzReceive(f *testing.F) {
	_, raw := linearDoc(f, 4, 2)
	for seed := uint64(1); seed <= 3; seed++ {
		eng := &engineServer{doc: NewDocument(Options{}), states: make([]*SyncState, 4)}
		w, err := runSession(f, seed, eng, true)
		if err != nil {
			f.Fatal(err)
		}
		for _, m := range w.sent[:min(len(w.sent), 8)] {
			f.Add(m)
		}
	}
	f.Add(resetMessage(nil))
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := docOf(t, raw[:2])
		s := NewSyncState()
		n := d.Graph().Len()
		if _, err := s.Receive(d, msg); err != nil && d.Graph().Len() != n {
			t.Fatal("a refused message changed the document")
		}
		s.Generate(d)
		if _, err := s.Receive(d, msg); err == nil {
			s.Generate(d)
		}
	})
}
