// Package loadgen drives an automerge-repo sync server (Tandem, the
// official Node server, anything that speaks the protocol) with simulated
// clients and measures what it does: how long an edit takes to reach the
// other clients of its document (fan-out latency), how many deliveries per
// second it sustains, what it costs in bytes, and the server's CPU and
// memory read from /proc. `tandem bench` is its command line.
//
// Three modes: Run (D documents × C clients at a total edit rate), Ramp
// (Runs at increasing rates until the p99 fan-out passes a bound), and Idle
// (N connections, optionally one small document each, and the server's
// resident memory per connection).
//
// Every client is one WebSocket (github.com/coder/websocket) read by one
// goroutine, syncing with Tandem's sync engine and editing with
// automerge-go (see replica). Every edit is one change whose message
// carries its send time; every other client of the document records when
// it saw it.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

// Config describes one load run.
type Config struct {
	// URL is the server's WebSocket URL (ws://127.0.0.1:3030/). Only
	// loopback hosts are accepted. Several comma-separated URLs (the
	// nodes of a cluster) spread each document's clients over them: its
	// client i connects to the (i mod n)th.
	URL string
	// Docs and ClientsPerDoc: D documents, each synced by C clients (C >= 2).
	Docs          int
	ClientsPerDoc int
	// Rate is the total edit rate in edits per second, spread uniformly
	// over every client.
	Rate float64
	// Duration is how long edits are measured; Warmup runs the same load
	// before, unmeasured.
	Duration time.Duration
	Warmup   time.Duration
	// TextRatio is the share of edits that are text splices; the rest are
	// map sets. Zero means 0.5; use a negative value for map sets only.
	TextRatio float64
	// Drain bounds the wait, after the last measured edit, for deliveries
	// still on their way; what has not arrived by then is lost. Zero means
	// 10 s.
	Drain time.Duration
	// History is how many changes each document has before the load: its
	// creator types them (one character each) before its first sync, so
	// that they reach the server in one burst, and every other client
	// then fetches them.
	History int
	// SetupTimeout bounds connecting the clients and syncing every
	// document to them before the load starts. Zero means 2 minutes.
	SetupTimeout time.Duration
	// ServerPIDs are the processes whose CPU time and resident memory are
	// reported (summed); empty reports none.
	ServerPIDs []int
	// Seed makes document IDs differ per run and picks the clients; zero
	// picks one.
	Seed uint64
	// Progress, if set, is called about once a second while the run goes.
	Progress func(Progress)
	// Logger receives setup events. Nil discards them.
	Logger *slog.Logger
}

// Progress is what a running load reports once a second.
type Progress struct {
	Phase      string // "connecting", "syncing", "warm-up", "measuring", "draining"
	Elapsed    time.Duration
	Edits      int64
	Deliveries int64
	P99        time.Duration // so far
	Errors     int64
	Disconnect int64
	Lag        time.Duration // how far the edit schedule is behind
}

// Result is a load run's report.
type Result struct {
	URL           string  `json:"url"`
	Docs          int     `json:"docs"`
	ClientsPerDoc int     `json:"clients_per_doc"`
	History       int     `json:"history"`
	Connections   int     `json:"connections"`
	RateTarget    float64 `json:"rate_target"`
	DurationS     float64 `json:"duration_s"`
	WarmupS       float64 `json:"warmup_s"`
	// Edits were made and sent in the measured window; EditRate is per
	// second of it. EditsSkipped were scheduled for a client whose
	// connection had ended.
	Edits        int64   `json:"edits"`
	EditRate     float64 `json:"edit_rate"`
	EditsSkipped int64   `json:"edits_skipped"`
	// Expected = Edits × (ClientsPerDoc - 1); Delivered arrived by the end
	// of the drain; Lost is the difference.
	Expected     int64            `json:"deliveries_expected"`
	Delivered    int64            `json:"deliveries"`
	Lost         int64            `json:"lost"`
	DeliveryRate float64          `json:"deliveries_per_s"`
	FanOut       Latency          `json:"fanout"`
	MaxLagMS     float64          `json:"schedule_lag_max_ms"`
	BytesIn      int64            `json:"bytes_in"`
	BytesOut     int64            `json:"bytes_out"`
	MessagesIn   int64            `json:"messages_in"`
	MessagesOut  int64            `json:"messages_out"`
	BytesInPerS  float64          `json:"bytes_in_per_s"`
	BytesOutPerS float64          `json:"bytes_out_per_s"`
	Errors       int64            `json:"errors"`
	ErrorSamples []string         `json:"error_samples,omitempty"`
	Disconnects  map[string]int64 `json:"disconnects"`
	// Missing, when something was lost, says where the edits not
	// delivered (warm-up ones included) got stuck.
	Missing       *Missing `json:"missing,omitempty"`
	Server        *Usage   `json:"server,omitempty"`
	Self          Usage    `json:"load_generator"`
	DrainS        float64  `json:"drain_s"`
	SetupS        float64  `json:"setup_s"`
	HistoryPerDoc float64  `json:"changes_per_doc"`
}

// Usage is a process's (or several processes') CPU and memory over the
// measured window.
type Usage struct {
	PIDs       []int   `json:"pids,omitempty"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPercent is of one core: 200 means two cores busy.
	CPUPercent float64 `json:"cpu_percent"`
	// CPUPerEditUS is CPU time per measured edit, in microseconds.
	CPUPerEditUS float64 `json:"cpu_per_edit_us"`
	RSSStart     int64   `json:"rss_start_bytes"`
	RSSEnd       int64   `json:"rss_end_bytes"`
	RSSPeak      int64   `json:"rss_peak_bytes"` // sampled 4 times a second
}

// CheckURL accepts ws:// and wss:// URLs whose host is a loopback address
// (localhost, 127.0.0.0/8, ::1): the load generator never targets another
// machine.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("url %q: %w", raw, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("url %q: want ws:// or wss://", raw)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("url %q: only loopback targets (127.0.0.1, ::1, localhost) are allowed", raw)
	}
	return nil
}

func (cfg Config) withDefaults() (Config, error) {
	for _, u := range cfg.urls() {
		if err := CheckURL(u); err != nil {
			return cfg, err
		}
	}
	if cfg.Docs < 1 || cfg.ClientsPerDoc < 2 {
		return cfg, fmt.Errorf("need at least 1 document and 2 clients per document (got %d × %d)", cfg.Docs, cfg.ClientsPerDoc)
	}
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return cfg, errors.New("rate and duration must be positive")
	}
	if cfg.TextRatio == 0 {
		cfg.TextRatio = 0.5
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 10 * time.Second
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = 2 * time.Minute
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// urls returns the URLs in cfg.URL.
func (cfg Config) urls() []string { return strings.Split(cfg.URL, ",") }

// docGroup is one document and its clients; clients[0] created it.
type docGroup struct {
	id      wire.DocID
	clients []*client
}

// Run connects Docs × ClientsPerDoc clients, creates the documents, runs
// the edit load for Warmup + Duration, waits for the deliveries, closes
// every connection and reports. It returns an error when the run could not
// be set up (a dial or the initial sync failed); what goes wrong during
// the load is counted in the result instead.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	st := newStats()
	res := Result{URL: cfg.URL, Docs: cfg.Docs, ClientsPerDoc: cfg.ClientsPerDoc, History: cfg.History, Connections: cfg.Docs * cfg.ClientsPerDoc,
		RateTarget: cfg.Rate, DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds()}
	begin := time.Now()
	var phase atomic.Value
	phase.Store("connecting")
	var edits, lagNS atomic.Int64
	stopProgress := startProgress(cfg.Progress, begin, &phase, st, &edits, &lagNS)
	defer stopProgress()

	groups, all := buildGroups(cfg, st)
	defer closeAll(all)

	setupCtx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	urls := cfg.urls()
	if err := forEach(setupCtx, all, 64, func(ctx context.Context, c *client) error { return c.dial(ctx, urls[c.author%len(urls)]) }); err != nil {
		return res, fmt.Errorf("connect: %w", err)
	}
	phase.Store("syncing")
	if err := syncDocs(setupCtx, groups, cfg.History); err != nil {
		return res, err
	}
	res.SetupS = time.Since(begin).Seconds()
	cfg.Logger.Info("documents synced to every client", "docs", cfg.Docs, "clients", len(all), "took", time.Since(begin))

	// The load: a scheduler hands edits to workers at the target rate.
	workers := max(4, 4*runtime.GOMAXPROCS(0))
	type job struct {
		c              *client
		text, measured bool
	}
	jobs := make(chan job, 4*workers)
	var skipped atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				made, err := j.c.edit(j.text, j.measured)
				switch {
				case err != nil:
					st.fail(err)
				case !made && j.measured:
					skipped.Add(1)
				case made && j.measured:
					edits.Add(1)
				}
			}
		})
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 1))
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	phase.Store("warm-up")
	if cfg.Warmup == 0 {
		phase.Store("measuring")
	}
	var serverStart ProcSample
	var selfStart time.Duration
	measuring := false
	beginMeasure := func() {
		measuring = true
		phase.Store("measuring")
		selfStart, _ = selfCPU()
		if len(cfg.ServerPIDs) > 0 {
			var perr error
			if serverStart, perr = readProcs(cfg.ServerPIDs); perr != nil {
				st.fail(fmt.Errorf("server process: %w", perr))
			}
		}
	}
	sampler := startRSSSampler(cfg.ServerPIDs)
	total := int64((cfg.Warmup + cfg.Duration).Seconds() * cfg.Rate)
	var issued int64
	tick := time.NewTicker(time.Millisecond)
schedule:
	for issued < total {
		now := time.Now()
		due := min(int64(now.Sub(start).Seconds()*cfg.Rate)+1, total)
		for ; issued < due; issued++ {
			at := start.Add(time.Duration(float64(issued) / cfg.Rate * float64(time.Second)))
			measured := !at.Before(measureFrom)
			if measured && !measuring {
				beginMeasure()
			}
			g := groups[rng.IntN(len(groups))]
			select {
			case jobs <- job{c: g.clients[rng.IntN(len(g.clients))], text: rng.Float64() < cfg.TextRatio, measured: measured}:
			case <-ctx.Done():
				break schedule
			}
			if lag := time.Since(at); lag > time.Duration(lagNS.Load()) {
				lagNS.Store(int64(lag))
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			break schedule
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if !measuring {
		beginMeasure()
	}
	// The measured window ends when the last edit went out, if that is
	// later than planned (the generator fell behind), or when ctx ended.
	measured := max(time.Since(measureFrom), cfg.Duration)
	if ctx.Err() != nil {
		measured = max(time.Since(measureFrom), time.Millisecond)
	}
	selfEnd, _ := selfCPU()
	var serverEnd ProcSample
	if len(cfg.ServerPIDs) > 0 {
		if serverEnd, err = readProcs(cfg.ServerPIDs); err != nil {
			st.fail(fmt.Errorf("server process: %w", err))
		}
	}
	peak := sampler()

	// Drain: wait for what is still on its way.
	phase.Store("draining")
	res.Edits, res.EditsSkipped = edits.Load(), skipped.Load()
	res.Expected = res.Edits * int64(cfg.ClientsPerDoc-1)
	drainStart := time.Now()
	for st.deliveries.Load() < res.Expected && time.Since(drainStart) < cfg.Drain && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	res.DrainS = time.Since(drainStart).Seconds()
	if st.deliveries.Load() < res.Expected {
		res.Missing = missing(groups)
	}

	secs := measured.Seconds()
	res.EditRate = float64(res.Edits) / secs
	res.Delivered = st.deliveries.Load()
	res.Lost = max(res.Expected-res.Delivered, 0)
	res.DeliveryRate = float64(res.Delivered) / secs
	res.FanOut = st.hist.Summary()
	res.MaxLagMS = float64(lagNS.Load()) / 1e6
	res.BytesIn, res.BytesOut = st.bytesIn.Load(), st.bytesOut.Load()
	res.MessagesIn, res.MessagesOut = st.msgsIn.Load(), st.msgsOut.Load()
	res.BytesInPerS, res.BytesOutPerS = float64(res.BytesIn)/secs, float64(res.BytesOut)/secs
	res.HistoryPerDoc = float64(issued) / float64(cfg.Docs)
	res.Self = usage(nil, selfEnd-selfStart, secs, res.Edits)
	_, res.Self.RSSPeak = selfCPU()
	if len(cfg.ServerPIDs) > 0 {
		u := usage(cfg.ServerPIDs, serverEnd.CPU-serverStart.CPU, secs, res.Edits)
		u.RSSStart, u.RSSEnd, u.RSSPeak = serverStart.RSS, serverEnd.RSS, max(peak, serverEnd.RSS, serverStart.RSS)
		res.Server = &u
	}
	closeAll(all)
	res.Errors = st.errs.Load()
	res.ErrorSamples, res.Disconnects, _ = st.snapshot()
	return res, nil
}

// Missing breaks down the deliveries that had not arrived at the end of
// the drain, over every edit of the run (warm-up ones too).
type Missing struct {
	// NoClient: edits that reached none of the other clients of their
	// document (the server never took them, or took them and sent them to
	// nobody); Some: edits that reached some of them but not all.
	NoClient int64 `json:"reached_no_client"`
	Some     int64 `json:"reached_some_clients"`
	// Deliveries missing on account of each.
	NoClientDeliveries int64 `json:"no_client_deliveries"`
	SomeDeliveries     int64 `json:"some_deliveries"`
}

// missing compares, per document and author, the author's last edit with
// the edits each other client saw of it, up to the first gap.
func missing(groups []*docGroup) *Missing {
	m := &Missing{}
	for _, g := range groups {
		for a, author := range g.clients {
			author.mu.Lock()
			made := author.seq
			author.mu.Unlock()
			maxSeen, minSeen := uint64(0), made
			for r, c := range g.clients {
				if r == a {
					continue
				}
				c.mu.Lock()
				seen := c.seen[a].low
				c.mu.Unlock()
				maxSeen, minSeen = max(maxSeen, seen), min(minSeen, seen)
				m.NoClientDeliveries += int64(made - min(made, seen))
			}
			m.NoClient += int64(made - min(made, maxSeen))
			m.Some += int64(maxSeen - min(maxSeen, minSeen))
		}
	}
	// Split the deliveries: each no-client edit misses C-1 of them.
	per := int64(0)
	if len(groups) > 0 {
		per = int64(len(groups[0].clients) - 1)
	}
	total := m.NoClientDeliveries
	m.NoClientDeliveries = m.NoClient * per
	m.SomeDeliveries = total - m.NoClientDeliveries
	return m
}

func usage(pids []int, cpu time.Duration, secs float64, edits int64) Usage {
	u := Usage{PIDs: pids, CPUSeconds: cpu.Seconds(), CPUPercent: 100 * cpu.Seconds() / secs}
	if edits > 0 {
		u.CPUPerEditUS = float64(cpu/time.Microsecond) / float64(edits)
	}
	return u
}

// buildGroups makes the documents and their clients (not connected yet).
func buildGroups(cfg Config, st *stats) ([]*docGroup, []*client) {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	run := fmt.Sprintf("%08x", rng.Uint32())
	groups := make([]*docGroup, cfg.Docs)
	var all []*client
	for d := range groups {
		g := &docGroup{id: wire.NewDocID()}
		for i := range cfg.ClientsPerDoc {
			c := newClient(st, i, cfg.ClientsPerDoc, wire.PeerID(fmt.Sprintf("bench-%s-%d-%d", run, d, i)), g.id, rng.Uint64())
			g.clients = append(g.clients, c)
			all = append(all, c)
		}
		groups[d] = g
	}
	return groups, all
}

// syncDocs creates every document on its first client, waits until the
// server has it, then has the other clients request it and waits until
// they have it.
func syncDocs(ctx context.Context, groups []*docGroup, history int) error {
	creators := make([]*client, len(groups))
	var joiners []*client
	for d, g := range groups {
		creators[d] = g.clients[0]
		joiners = append(joiners, g.clients[1:]...)
	}
	err := forEach(ctx, creators, 256, func(ctx context.Context, c *client) error {
		c.mu.Lock()
		c.readyFn = serverHasOurHeads
		c.mu.Unlock()
		if err := c.create(nil); err != nil {
			return err
		}
		if err := c.prefill(history); err != nil {
			return err
		}
		if err := c.send(wire.TypeSync); err != nil {
			return err
		}
		return waitReady(ctx, c)
	})
	if err != nil {
		return fmt.Errorf("create documents: %w", err)
	}
	err = forEach(ctx, joiners, 256, func(ctx context.Context, c *client) error {
		c.mu.Lock()
		c.readyFn = hasDocument
		c.mu.Unlock()
		if err := c.send(wire.TypeRequest); err != nil {
			return err
		}
		return waitReady(ctx, c)
	})
	if err != nil {
		return fmt.Errorf("sync documents to their clients: %w", err)
	}
	// Each client applies what it fetched to its automerge-go document now
	// rather than at its first edit: with a long history that is seconds
	// per client, which would stall the load and its clients' reading.
	err = forEach(ctx, joiners, runtime.GOMAXPROCS(0), func(ctx context.Context, c *client) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := c.rep.merge(); err != nil {
			return err
		}
		return c.resolveObjects()
	})
	if err != nil {
		return fmt.Errorf("apply the documents' histories: %w", err)
	}
	return nil
}

func waitReady(ctx context.Context, c *client) error {
	select {
	case <-c.ready:
		return nil
	case <-c.ended:
		return fmt.Errorf("client %s: connection ended before its document was synced", c.peerID)
	case <-ctx.Done():
		return fmt.Errorf("client %s: document %s not synced: %w", c.peerID, c.docID, ctx.Err())
	}
}

// forEach runs fn for every client, at most limit at once, and returns the
// first error (the others still finish).
func forEach(ctx context.Context, cs []*client, limit int, fn func(context.Context, *client) error) error {
	var wg sync.WaitGroup
	sem := make(chan struct{}, limit)
	var mu sync.Mutex
	var first error
	for _, c := range cs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, c); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// closeAll closes every connected client, 256 at a time.
func closeAll(cs []*client) {
	_ = forEach(context.Background(), cs, 256, func(_ context.Context, c *client) error {
		if !c.closing.Load() {
			c.close()
		}
		return nil
	})
}

// startRSSSampler samples the processes' resident memory four times a
// second until the returned function is called, which returns the peak.
func startRSSSampler(pids []int) func() int64 {
	if len(pids) == 0 {
		return func() int64 { return 0 }
	}
	stop, done := make(chan struct{}), make(chan int64)
	go func() {
		var peak int64
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			if s, err := readProcs(pids); err == nil {
				peak = max(peak, s.RSS)
			}
			select {
			case <-t.C:
			case <-stop:
				done <- peak
				return
			}
		}
	}()
	return func() int64 {
		close(stop)
		return <-done
	}
}

// startProgress calls fn once a second until the returned function is
// called.
func startProgress(fn func(Progress), begin time.Time, phase *atomic.Value, st *stats, edits, lag *atomic.Int64) func() {
	if fn == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-stop:
				return
			}
			_, _, disc := st.snapshot()
			fn(Progress{Phase: phase.Load().(string), Elapsed: time.Since(begin), Edits: edits.Load(),
				Deliveries: st.deliveries.Load(), P99: st.hist.Quantile(0.99), Errors: st.errs.Load(),
				Disconnect: disc, Lag: time.Duration(lag.Load())})
		}
	}()
	return func() {
		close(stop)
		<-done
	}
}
