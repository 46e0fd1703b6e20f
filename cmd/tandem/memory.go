package main

import (
	"context"
	"runtime"
	"runtime/metrics"
	"time"
)

// collectWhenQuiet runs a garbage collection when the server has gone quiet
// after a burst: no collection ran during the last interval, yet the heap
// holds more unused and free memory than live data (and over 16 MiB of it).
//
// Go collects when allocation reaches the goal set by the last collection,
// and its scavenger returns memory to the system down to that goal. A
// burst (a large frame, thousands of rooms opened and evicted) leaves the
// goal high; an idle server then allocates too little to reach it, so the
// burst's memory stays resident until the runtime's forced collection two
// minutes later, and the Automerge core's memory (freed by finalizers) with
// it. One collection at the end of the quiet interval lowers the goal, and
// the scavenger gives the rest back; at the next tick the C allocator is
// asked to return what the core freed meanwhile. It costs nothing while the server is
// busy (collections run anyway) or truly idle (nothing to collect).
func collectWhenQuiet(ctx context.Context, every time.Duration) {
	samples := []metrics.Sample{
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last uint64
	collected := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		metrics.Read(samples)
		cycles := samples[0].Value.Uint64()
		live := samples[1].Value.Uint64()
		spare := samples[2].Value.Uint64() + samples[3].Value.Uint64()
		if collected {
			// The collection's finalizers have freed the core's memory
			// by now; give it back too.
			trimCHeap()
			collected = false
		}
		if cycles == last && spare > max(live, 16<<20) {
			runtime.GC()
			metrics.Read(samples[:1])
			cycles = samples[0].Value.Uint64()
			collected = true
		}
		last = cycles
	}
}
