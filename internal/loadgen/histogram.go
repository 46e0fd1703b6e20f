package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records durations in log-linear buckets: each power of two of
// microseconds is split into subBuckets equal parts, so a quantile is read
// to within 1/subBuckets (1.6 %) of its value, in constant memory whatever
// the number of samples. Record is safe for concurrent use (one atomic add
// per sample); read it once recording has stopped.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sumUS  atomic.Uint64
	maxUS  atomic.Uint64
}

const (
	subBits    = 6
	subBuckets = 1 << subBits // per power of two
	// Values below subBuckets µs are exact (bucket = value); above, each
	// octave [2^k, 2^(k+1)) has subBuckets buckets. 2^40 µs is 12 days.
	maxOctave   = 40
	histBuckets = subBuckets + (maxOctave-subBits+1)*subBuckets
)

// bucketOf returns the bucket of a value in microseconds.
func bucketOf(us uint64) int {
	if us < subBuckets {
		return int(us)
	}
	k := bits.Len64(us) - 1 // us in [2^k, 2^(k+1)), k >= subBits
	if k > maxOctave {
		return histBuckets - 1
	}
	sub := (us >> (k - subBits)) & (subBuckets - 1)
	return subBuckets + (k-subBits)*subBuckets + int(sub)
}

// bucketBounds returns the smallest and largest value (µs) of a bucket.
func bucketBounds(b int) (lo, hi uint64) {
	if b < subBuckets {
		return uint64(b), uint64(b)
	}
	k := (b-subBuckets)/subBuckets + subBits
	sub := uint64((b - subBuckets) % subBuckets)
	width := uint64(1) << (k - subBits)
	lo = uint64(1)<<k + sub*width
	return lo, lo + width - 1
}

// Record adds one sample. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.counts[bucketOf(us)].Add(1)
	h.n.Add(1)
	h.sumUS.Add(us)
	for {
		m := h.maxUS.Load()
		if us <= m || h.maxUS.CompareAndSwap(m, us) {
			return
		}
	}
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the largest sample (exact, to the microsecond).
func (h *Histogram) Max() time.Duration {
	return time.Duration(h.maxUS.Load()) * time.Microsecond
}

// Mean returns the average sample.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sumUS.Load()/n) * time.Microsecond
}

// Quantile returns the sample at quantile q (0 < q <= 1): the smallest
// recorded value v such that at least q of the samples are <= v, read as
// the middle of v's bucket (never above Max). It returns 0 without
// samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(math.Ceil(q * float64(n))) // 1-based rank of the sample
	rank = max(rank, 1)
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			lo, hi := bucketBounds(b)
			v := min(lo+(hi-lo)/2, h.maxUS.Load())
			return time.Duration(v) * time.Microsecond
		}
	}
	return h.Max()
}

// Merge adds o's samples to h.
func (h *Histogram) Merge(o *Histogram) {
	for b := range o.counts {
		if c := o.counts[b].Load(); c > 0 {
			h.counts[b].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sumUS.Add(o.sumUS.Load())
	for {
		m, om := h.maxUS.Load(), o.maxUS.Load()
		if om <= m || h.maxUS.CompareAndSwap(m, om) {
			return
		}
	}
}

// Latency is a summary of a Histogram in milliseconds, for reports.
type Latency struct {
	Samples uint64  `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P95     float64 `json:"p95_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Mean    float64 `json:"mean_ms"`
}

// Summary returns the histogram's percentiles.
func (h *Histogram) Summary() Latency {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{
		Samples: h.Count(),
		P50:     ms(h.Quantile(0.50)),
		P95:     ms(h.Quantile(0.95)),
		P99:     ms(h.Quantile(0.99)),
		Max:     ms(h.Max()),
		Mean:    ms(h.Mean()),
	}
}
