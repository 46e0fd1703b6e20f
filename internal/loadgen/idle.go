package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/sync/wire"
)

// IdleConfig describes an idle-connection measurement: the server's
// resident memory before and after N connections are opened (each
// optionally creating one small document), and, with Release, how it
// comes back down once they close.
type IdleConfig struct {
	URL         string
	Connections int
	// Docs: each connection creates one small document and waits until
	// the server has it.
	Docs bool
	// ServerPIDs are the processes whose memory is read (summed): required.
	ServerPIDs []int
	// Settle is the wait between the last connection opening and the
	// reading of "after" (zero means 5 s), so that the server has handled
	// every first message and keepalive ping.
	Settle time.Duration
	// Release, when positive, closes every connection after the reading
	// and samples the server's memory once a second for this long (long
	// enough for the server to evict the idle documents).
	Release time.Duration
	// Concurrency bounds connections being opened at once (zero: 100).
	Concurrency int
	// SetupTimeout bounds opening them all (zero: 5 minutes).
	SetupTimeout time.Duration
	Seed         uint64
	Progress     func(Progress)
	Logger       *slog.Logger
}

// IdleResult is an idle measurement's report.
type IdleResult struct {
	URL         string `json:"url"`
	Connections int    `json:"connections"`
	WithDocs    bool   `json:"with_docs"`
	// Opened connections joined; Ready ones also had their document
	// synced (with Docs). When SetupTimeout ends the opening first,
	// SetupError says so and the measurement goes on with what opened.
	Opened     int    `json:"opened"`
	Ready      int    `json:"ready"`
	SetupError string `json:"setup_error,omitempty"`
	// RSSBefore is read before the first connection opens, RSSAfter
	// Settle after the last; PerConnection = (after - before) / Opened.
	RSSBefore     int64   `json:"rss_before_bytes"`
	RSSAfter      int64   `json:"rss_after_bytes"`
	PerConnection float64 `json:"rss_per_connection_bytes"`
	// ServerCPUSeconds is what the server spent while they opened.
	ServerCPUSeconds float64          `json:"server_cpu_s"`
	OpenS            float64          `json:"open_s"`
	BytesIn          int64            `json:"bytes_in"`
	BytesOut         int64            `json:"bytes_out"`
	Errors           int64            `json:"errors"`
	ErrorSamples     []string         `json:"error_samples,omitempty"`
	Disconnects      map[string]int64 `json:"disconnects"`
	Release          *Release         `json:"release,omitempty"`
	Self             Usage            `json:"load_generator"`
}

// Release is how the server's memory came down after the connections
// closed.
type Release struct {
	WaitS float64 `json:"wait_s"`
	// RSSEnd is the last sample, RSSMin the lowest; EndOverBefore is
	// RSSEnd / RSSBefore (1.2 is "within 20 % of the baseline").
	RSSEnd        int64   `json:"rss_end_bytes"`
	RSSMin        int64   `json:"rss_min_bytes"`
	EndOverBefore float64 `json:"end_over_before"`
	// WithinS is when RSS first came within 20 % of RSSBefore, seconds
	// after the close; -1 if it never did.
	WithinS float64 `json:"within_20pct_after_s"`
	// Samples every 5 s: seconds after the close and RSS.
	Samples []RSSPoint `json:"samples"`
}

// RSSPoint is one memory sample.
type RSSPoint struct {
	AtS float64 `json:"at_s"`
	RSS int64   `json:"rss_bytes"`
}

// Idle runs the measurement.
func Idle(ctx context.Context, cfg IdleConfig) (IdleResult, error) {
	if err := CheckURL(cfg.URL); err != nil {
		return IdleResult{}, err
	}
	if cfg.Connections < 1 || len(cfg.ServerPIDs) == 0 {
		return IdleResult{}, errors.New("idle: need at least one connection and the server's pid")
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 5 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 100
	}
	if cfg.SetupTimeout <= 0 {
		cfg.SetupTimeout = 5 * time.Minute
	}
	if cfg.Seed == 0 {
		cfg.Seed = rand.Uint64()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	res := IdleResult{URL: cfg.URL, Connections: cfg.Connections, WithDocs: cfg.Docs}
	st := newStats()
	begin := time.Now()
	var phase atomic.Value
	phase.Store("opening")
	var opened, ready, lag atomic.Int64
	stopProgress := startProgress(cfg.Progress, begin, &phase, st, &ready, &lag)
	defer stopProgress()

	before, err := readProcs(cfg.ServerPIDs)
	if err != nil {
		return res, err
	}
	res.RSSBefore = before.RSS
	selfStart, _ := selfCPU()

	rng := rand.New(rand.NewPCG(cfg.Seed, 2))
	run := fmt.Sprintf("%08x", rng.Uint32())
	clients := make([]*client, cfg.Connections)
	for i := range clients {
		clients[i] = newClient(st, 0, 1, wire.PeerID(fmt.Sprintf("bench-idle-%s-%d", run, i)), wire.NewDocID(), rng.Uint64())
		clients[i].readyFn = serverHasOurHeads
	}
	defer closeAll(clients)
	setupCtx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	err = forEach(setupCtx, clients, cfg.Concurrency, func(ctx context.Context, c *client) error {
		if err := c.dial(ctx, cfg.URL); err != nil {
			return err
		}
		opened.Add(1)
		if cfg.Docs {
			if err := c.create(func(root *automerge.Map) error {
				return root.Set("title", "idle document of "+string(c.peerID))
			}); err != nil {
				return err
			}
			if err := c.send(wire.TypeSync); err != nil {
				return err
			}
			if err := waitReady(ctx, c); err != nil {
				return err
			}
		}
		ready.Add(1)
		return nil
	})
	res.Opened, res.Ready = int(opened.Load()), int(ready.Load())
	switch {
	case err != nil && errors.Is(setupCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil && res.Opened > 0:
		// The server could not take them all in time: measure what it took.
		res.SetupError = fmt.Sprintf("after %s, %d of %d connections open and %d ready: %v", cfg.SetupTimeout, res.Opened, cfg.Connections, res.Ready, err)
		cfg.Logger.Warn("idle: setup timed out; measuring the connections that opened", "opened", res.Opened, "ready", res.Ready)
	case err != nil:
		return res, fmt.Errorf("open connections: %w", err)
	}
	res.OpenS = time.Since(begin).Seconds()
	cfg.Logger.Info("connections open", "n", cfg.Connections, "docs", cfg.Docs, "took", time.Since(begin))

	phase.Store("settling")
	if err := sleep(ctx, cfg.Settle); err != nil {
		return res, err
	}
	after, err := readProcs(cfg.ServerPIDs)
	if err != nil {
		return res, err
	}
	res.RSSAfter = after.RSS
	res.PerConnection = float64(after.RSS-before.RSS) / float64(res.Opened)
	res.ServerCPUSeconds = (after.CPU - before.CPU).Seconds()
	selfEnd, _ := selfCPU()
	res.Self = usage(nil, selfEnd-selfStart, time.Since(begin).Seconds(), 0)
	_, res.Self.RSSPeak = selfCPU()

	if cfg.Release > 0 {
		phase.Store("released")
		closeAll(clients)
		rel := &Release{WithinS: -1, RSSMin: after.RSS}
		closed := time.Now()
		for i := 1; ; i++ {
			next := closed.Add(time.Duration(i) * time.Second)
			if next.After(closed.Add(cfg.Release)) {
				break
			}
			if err := sleep(ctx, time.Until(next)); err != nil {
				return res, err
			}
			s, err := readProcs(cfg.ServerPIDs)
			if err != nil {
				return res, err
			}
			at := time.Since(closed).Seconds()
			rel.RSSEnd, rel.RSSMin = s.RSS, min(rel.RSSMin, s.RSS)
			if rel.WithinS < 0 && float64(s.RSS) <= 1.2*float64(before.RSS) {
				rel.WithinS = at
			}
			if i%5 == 0 {
				rel.Samples = append(rel.Samples, RSSPoint{AtS: at, RSS: s.RSS})
			}
		}
		rel.WaitS = time.Since(closed).Seconds()
		rel.EndOverBefore = float64(rel.RSSEnd) / float64(before.RSS)
		res.Release = rel
	}
	res.BytesIn, res.BytesOut = st.bytesIn.Load(), st.bytesOut.Load()
	closeAll(clients)
	res.Errors = st.errs.Load()
	res.ErrorSamples, res.Disconnects, _ = st.snapshot()
	return res, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
