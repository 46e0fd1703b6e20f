package engine

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
)

// graphMemory builds a graph of the given changes and returns its heap
// bytes per change beyond the changes' bytes (which the caller holds).
func graphMemory(tb testing.TB, raw [][]byte) float64 {
	cs := make([]*Change, len(raw))
	for i, b := range raw {
		c, err := ParseChange(b)
		if err != nil {
			tb.Fatal(err)
		}
		cs[i] = c
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g := NewGraph()
	for _, c := range cs {
		if _, err := g.Add(c); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(g)
	runtime.KeepAlive(cs) // the parsed changes (and raw) are not the graph's

	return float64(after.HeapAlloc-before.HeapAlloc) / float64(len(raw))
}

// TestGraphMemory holds the graph to its budget: at most 200 bytes per
// change beyond the change's own bytes.
func TestGraphMemory(t *testing.T) {
	raw := synthChanges(50_000, 10)
	per := graphMemory(t, raw)
	t.Logf("%.1f bytes per change beyond its bytes (50,000 changes, 10 actors)", per)
	if per > 200 {
		t.Fatalf("%.1f bytes per change", per)
	}
	// A Document copies the bytes of what it adds (out of the messages
	// they came in): the allocator's rounding of those copies comes on top.
	cs := make([]*Change, len(raw))
	for i, b := range raw {
		cs[i], _ = ParseChange(b)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	d := NewDocument(Options{})
	if _, err := d.Add(cs); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(cs)
	t.Logf("a Document: %.1f bytes per change beyond its bytes (copies of %d bytes on average)",
		float64(after.HeapAlloc-before.HeapAlloc-uint64(d.Graph().Bytes()))/float64(len(raw)), d.Graph().Bytes()/len(raw))
}

// BenchmarkGraphMemory reports the graph's memory per change (bytes/change,
// beyond the change's bytes) for documents made by automerge-go.
func BenchmarkGraphMemory(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("changes=%d", n), func(b *testing.B) {
			_, raw := linearDoc(b, n, 10)
			b.ResetTimer()
			var per float64
			for range b.N {
				per = graphMemory(b, raw)
			}
			b.ReportMetric(per, "bytes/change")
		})
	}
}

// The sync benchmark: a document with a history of n changes and 10
// caught-up peers. Each round one peer (in turn) makes a change; its
// message reaches the server, the server generates for every peer, every
// peer answers, and so on until nobody has anything to send: receive and
// generate for 10 peers per change. Only the server's calls are timed. The
// same rounds, on the same changes, run against the engine and then
// against automerge-go's core as the server (one after the other, so that
// neither runs in the other's cold caches). The peers are engine sync
// states over one document per server: all peers hold the same changes
// once caught up, and a peer's messages do not depend on whether it holds
// a change a moment before the server sends it.

const benchPeers = 10

type benchWorld struct {
	srv     server
	peerDoc *Document
	peers   []*SyncState // each peer's state for this server
	timed   time.Duration
	msgs    int
}

// round delivers until quiet, starting from the author's message.
func (w *benchWorld) round(b *testing.B, author int) {
	var toServer [benchPeers][][]byte
	if m, ok := w.peers[author].Generate(w.peerDoc); ok {
		toServer[author] = append(toServer[author], m)
	}
	for busy := true; busy; {
		busy = false
		for p := range benchPeers {
			for len(toServer[p]) > 0 {
				busy = true
				m := toServer[p][0]
				toServer[p] = toServer[p][1:]
				start := time.Now()
				changed, err := w.srv.receive(p, m)
				if err != nil {
					b.Fatal(err)
				}
				var out [benchPeers][]byte
				for q := range benchPeers {
					if q == p || changed {
						out[q], _ = w.srv.generate(q)
					}
				}
				w.timed += time.Since(start)
				for q, o := range out {
					if o == nil {
						continue
					}
					w.msgs++
					if _, err := w.peers[q].Receive(w.peerDoc, o); err != nil {
						b.Fatal(err)
					}
					if r, ok := w.peers[q].Generate(w.peerDoc); ok {
						toServer[q] = append(toServer[q], r)
					}
				}
			}
		}
	}
}

// play makes the changes, one round each, author i%benchPeers.
func (w *benchWorld) play(b *testing.B, changes []*Change, first int) {
	for i, c := range changes {
		if _, err := w.peerDoc.Add([]*Change{c}); err != nil {
			b.Fatal(err)
		}
		w.round(b, (first+i)%benchPeers)
	}
}

// moreChanges makes n changes on editor, actor i%benchPeers for the i-th.
func moreChanges(b *testing.B, editor *automerge.Doc, first, n int) []*Change {
	out := make([]*Change, n)
	for i := range n {
		k := first + i
		if err := editor.SetActorID(fmt.Sprintf("%032x", 1+k%benchPeers)); err != nil {
			b.Fatal(err)
		}
		if err := editor.RootMap().Set(fmt.Sprintf("k%d", k%16), int64(k)); err != nil {
			b.Fatal(err)
		}
		ts := time.UnixMilli(1_800_000_000_000)
		h, err := editor.Commit("", automerge.CommitOptions{Time: &ts})
		if err != nil {
			b.Fatal(err)
		}
		c, err := editor.Change(h)
		if err != nil {
			b.Fatal(err)
		}
		if out[i], err = ParseChange(c.Save()); err != nil {
			b.Fatal(err)
		}
	}
	return out
}

func BenchmarkSyncPerChange(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("history=%d", n), func(b *testing.B) {
			editor, raw := linearDoc(b, n, benchPeers)
			coreDoc, err := automerge.Load(editor.Save())
			if err != nil {
				b.Fatal(err)
			}
			worlds := []*benchWorld{
				{srv: &engineServer{doc: docOf(b, raw), states: make([]*SyncState, benchPeers)}, peerDoc: docOf(b, raw)},
				{srv: &coreServer{doc: coreDoc, states: make([]*automerge.SyncState, benchPeers)}, peerDoc: docOf(b, raw)},
			}
			warm := moreChanges(b, editor, n, 5)
			for _, w := range worlds {
				for p := range benchPeers {
					w.srv.connect(p, false)
					w.peers = append(w.peers, NewSyncState())
				}
				for p := range benchPeers { // catch up
					w.round(b, p)
				}
				w.play(b, warm, n)
				w.timed, w.msgs = 0, 0
			}
			timed := moreChanges(b, editor, n+len(warm), b.N)
			b.ResetTimer()
			for _, w := range worlds {
				w.play(b, timed, n+len(warm))
			}
			b.StopTimer()
			for _, w := range worlds {
				if !slicesEqualHeads(w.srv.heads(), heads(editor)) {
					b.Fatal("a server fell behind")
				}
			}
			e := float64(worlds[0].timed.Nanoseconds()) / float64(b.N)
			c := float64(worlds[1].timed.Nanoseconds()) / float64(b.N)
			b.ReportMetric(e/1e3, "engine-µs/change")
			b.ReportMetric(c/1e3, "core-µs/change")
			b.ReportMetric(c/e, "core/engine")
			b.ReportMetric(float64(worlds[0].msgs)/float64(b.N), "engine-msgs/change")
			b.ReportMetric(float64(worlds[1].msgs)/float64(b.N), "core-msgs/change")
		})
	}
}

func slicesEqualHeads(a, b []Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
