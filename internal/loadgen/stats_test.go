package loadgen

import (
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted samples.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(sorted)) + 0.999999999)
	return sorted[max(rank, 1)-1]
}

// within reports whether got is within the histogram's resolution (one
// bucket: 1/64 of the value, or 1 µs below 64 µs) of want.
func within(got, want time.Duration) bool {
	tol := max(want/subBuckets, time.Microsecond)
	return got >= want-tol && got <= want+tol
}

func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		name string
		gen  func() time.Duration
	}{
		{"uniform 0-100ms", func() time.Duration { return time.Duration(rng.Int64N(int64(100 * time.Millisecond))) }},
		{"exponential, mean 2ms", func() time.Duration { return time.Duration(rng.ExpFloat64() * float64(2*time.Millisecond)) }},
		{"bimodal 1ms and 200ms", func() time.Duration {
			if rng.IntN(100) < 3 {
				return 200*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
			}
			return time.Millisecond + time.Duration(rng.Int64N(int64(100*time.Microsecond)))
		}},
		{"microseconds", func() time.Duration { return time.Duration(rng.Int64N(50)) * time.Microsecond }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			samples := make([]time.Duration, 20000)
			var sum time.Duration
			for i := range samples {
				d := tt.gen().Truncate(time.Microsecond)
				samples[i] = d
				sum += d
				h.Record(d)
			}
			slices.Sort(samples)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1} {
				if got, want := h.Quantile(q), exactQuantile(samples, q); !within(got, want) {
					t.Errorf("q%.3f = %v, want %v", q, got, want)
				}
			}
			if h.Max() != samples[len(samples)-1] {
				t.Errorf("max = %v, want %v", h.Max(), samples[len(samples)-1])
			}
			if h.Count() != uint64(len(samples)) {
				t.Errorf("count = %d", h.Count())
			}
			if mean := sum / time.Duration(len(samples)); !within(h.Mean(), mean) {
				t.Errorf("mean = %v, want %v", h.Mean(), mean)
			}
		})
	}
}

func TestHistogramEdges(t *testing.T) {
	t.Parallel()
	var h Histogram
	if h.Quantile(0.99) != 0 || h.Max() != 0 || h.Mean() != 0 || h.Summary().Samples != 0 {
		t.Fatal("an empty histogram reports samples")
	}
	h.Record(-time.Second) // a clock step: counts as zero
	h.Record(0)
	h.Record(30 * 24 * time.Hour) // beyond the last octave: clamped into it
	if h.Count() != 3 || h.Quantile(0.5) != 0 || h.Max() != 30*24*time.Hour {
		t.Errorf("count %d, p50 %v, max %v", h.Count(), h.Quantile(0.5), h.Max())
	}
	if h.Quantile(1) > h.Max() {
		t.Errorf("p100 %v beyond max %v", h.Quantile(1), h.Max())
	}
	var one Histogram
	one.Record(7 * time.Millisecond)
	for _, q := range []float64{0, 0.5, 0.99, 1, 2} {
		if !within(one.Quantile(q), 7*time.Millisecond) {
			t.Errorf("one sample: q%v = %v", q, one.Quantile(q))
		}
	}
	s := one.Summary()
	if s.Samples != 1 || s.Max != 7 || s.P50 < 6.9 || s.P50 > 7 {
		t.Errorf("summary %+v", s)
	}
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	// Every value falls in the bucket whose bounds hold it, and buckets
	// are contiguous and increasing.
	prevHi := uint64(0)
	for b := range histBuckets {
		lo, hi := bucketBounds(b)
		if b > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", b, lo, prevHi)
		}
		if bucketOf(lo) != b || bucketOf(hi) != b {
			t.Fatalf("bucket %d [%d, %d]: bucketOf gives %d and %d", b, lo, hi, bucketOf(lo), bucketOf(hi))
		}
		if lo >= subBuckets && hi-lo+1 > lo/subBuckets+1 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its start", b, lo, hi, subBuckets)
		}
		prevHi = hi
	}
}

func TestHistogramConcurrentAndMerge(t *testing.T) {
	t.Parallel()
	var a, b Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				a.Record(time.Duration(g*1000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	b.Record(time.Hour)
	b.Merge(&a)
	if a.Count() != 8000 || b.Count() != 8001 || b.Max() != time.Hour {
		t.Fatalf("counts %d %d, max %v", a.Count(), b.Count(), b.Max())
	}
	if got := a.Quantile(0.5); !within(got, 4000*time.Microsecond) {
		t.Errorf("p50 = %v, want 4ms", got)
	}
}

func TestStampRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Unix(1767229200, 123456789)
	for _, s := range []stamp{
		{measured: true, author: 3, seq: 17, sent: at},
		{measured: false, author: 0, seq: 1, sent: at},
	} {
		got, ok := parseStamp(s.String())
		if !ok || got.measured != s.measured || got.author != s.author || got.seq != s.seq || !got.sent.Equal(s.sent) {
			t.Errorf("parseStamp(%q) = %+v, %v", s.String(), got, ok)
		}
	}
	for _, msg := range []string{"", initMessage, "tandem-bench x 1 2 3", "tandem-bench m -1 2 3", "tandem-bench m 1 2", "hello"} {
		if _, ok := parseStamp(msg); ok {
			t.Errorf("parseStamp(%q) accepted", msg)
		}
	}
}

func TestSeqSet(t *testing.T) {
	t.Parallel()
	var s seqSet
	// In order, a gap filled later, duplicates on both sides of the gap.
	for _, tt := range []struct {
		seq  uint64
		want bool
	}{{1, true}, {2, true}, {2, false}, {4, true}, {5, true}, {4, false}, {3, true}, {3, false}, {5, false}, {6, true}} {
		if got := s.add(tt.seq); got != tt.want {
			t.Fatalf("add(%d) = %v, want %v", tt.seq, got, tt.want)
		}
	}
	if s.low != 6 || s.above != nil {
		t.Fatalf("set %+v, want everything up to 6", s)
	}
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	// A command name with spaces and a parenthesis, as /proc shows it.
	stat := []byte("4242 (my (odd) server) S 1 4242 4242 0 -1 4194560 3000 0 0 0 250 75 0 0 20 0 12 0 100 2000000 5000 18446744073709551615\n")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3250*time.Millisecond {
		t.Errorf("cpu = %v, %v; want 3.25s (325 ticks)", cpu, err)
	}
	if _, err := parseStatCPU([]byte("4242 (short) S 1")); err == nil {
		t.Error("a short stat line was accepted")
	}
	status := []byte("Name:\tserver\nVmPeak:\t 900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t7\n")
	rss, hwm, err := parseStatusRSS(status)
	if err != nil || rss != 1024<<10 || hwm != 2048<<10 {
		t.Errorf("rss %d, hwm %d, %v", rss, hwm, err)
	}
	if _, _, err := parseStatusRSS([]byte("Name:\tkthreadd\n")); err == nil {
		t.Error("a status without VmRSS was accepted")
	}
	self, err := ReadProc(os.Getpid())
	if err != nil || self.RSS <= 0 || self.RSSHWM < self.RSS {
		t.Errorf("ReadProc(self) = %+v, %v", self, err)
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	for url, ok := range map[string]bool{
		"ws://127.0.0.1:3030/":     true,
		"ws://127.1.2.3:3030/sync": true,
		"ws://localhost:3030":      true,
		"ws://[::1]:3030/":         true,
		"wss://127.0.0.1/":         true,
		"ws://192.0.2.1:3030/":     false,
		"ws://example.com/":        false,
		"ws://0.0.0.0:3030/":       false,
		"http://127.0.0.1:3030/":   false,
		"127.0.0.1:3030":           false,
	} {
		if err := CheckURL(url); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", url, err, ok)
		}
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	cfg := RampConfig{P99Bound: 50 * time.Millisecond, MinAchieved: 0.95}
	good := Result{RateTarget: 1000, EditRate: 990, FanOut: Latency{P99: 49}}
	if s := judge(good, cfg); !s.Passed {
		t.Errorf("a good step failed: %v", s.Failed)
	}
	for name, r := range map[string]Result{
		"slow":        {RateTarget: 1000, EditRate: 1000, FanOut: Latency{P99: 51}},
		"lost":        {RateTarget: 1000, EditRate: 1000, Lost: 1, Expected: 3000},
		"errors":      {RateTarget: 1000, EditRate: 1000, Errors: 2},
		"disconnects": {RateTarget: 1000, EditRate: 1000, Disconnects: map[string]int64{"4001": 1}},
		"behind":      {RateTarget: 1000, EditRate: 900},
	} {
		if s := judge(r, cfg); s.Passed || len(s.Failed) != 1 {
			t.Errorf("%s: passed %v, reasons %q", name, s.Passed, s.Failed)
		}
	}
}

func TestChangeMessage(t *testing.T) {
	t.Parallel()
	r := newReplica()
	if err := r.am.RootMap().Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	want := stamp{measured: true, author: 2, seq: 9, sent: time.Unix(1767229200, 5)}.String()
	if err := r.commit(want); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for c := range r.graph.Graph().Changes() {
		raw = c.Raw
	}
	if got, err := changeMessage(raw); err != nil || got != want {
		t.Fatalf("changeMessage = %q, %v; want %q", got, err, want)
	}
	for _, bad := range [][]byte{nil, raw[:8], raw[:20], append([]byte{0}, raw[1:]...)} {
		if _, err := changeMessage(bad); err == nil {
			t.Errorf("changeMessage(%x…) accepted", bad[:min(len(bad), 8)])
		}
	}
}

// TestReplicasSync syncs two replicas with each other directly (no
// server): edits made on one, with received changes merged first, reach
// the other, and the stamps read back.
func TestReplicasSync(t *testing.T) {
	t.Parallel()
	a, b := newReplica(), newReplica()
	if err := a.am.RootMap().Set("n", int64(0)); err != nil {
		t.Fatal(err)
	}
	if err := a.commit(initMessage); err != nil {
		t.Fatal(err)
	}
	exchange := func() {
		t.Helper()
		for range 10 {
			m1, ok1 := a.generate()
			if ok1 {
				if _, _, err := b.receive(m1); err != nil {
					t.Fatal(err)
				}
			}
			m2, ok2 := b.generate()
			if ok2 {
				if _, _, err := a.receive(m2); err != nil {
					t.Fatal(err)
				}
			}
			if !ok1 && !ok2 {
				return
			}
		}
		t.Fatal("replicas did not settle")
	}
	exchange()
	for i, r := range []*replica{b, a, b} {
		if err := r.merge(); err != nil {
			t.Fatal(err)
		}
		if err := r.am.RootMap().Set("n", int64(i+1)); err != nil {
			t.Fatal(err)
		}
		if err := r.commit(stamp{author: i, seq: 1}.String()); err != nil {
			t.Fatal(err)
		}
		exchange()
	}
	if err := a.merge(); err != nil {
		t.Fatal(err)
	}
	if err := b.merge(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.graph.Heads(), b.graph.Heads()) || a.graph.Graph().Len() != 4 || len(a.am.Heads()) != 1 {
		t.Fatalf("heads %x and %x, %d changes", a.graph.Heads(), b.graph.Heads(), a.graph.Graph().Len())
	}
	v, err := b.am.RootMap().Get("n")
	if err != nil || v.Int64() != 3 {
		t.Fatalf("n = %v, %v; want 3", v, err)
	}
}
