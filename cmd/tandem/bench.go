package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-sync/tandem/internal/loadgen"
)

const benchUsage = `Usage: tandem bench [flags]

Drives an automerge-repo sync server (Tandem, the official Node server, or
any compatible one) on a loopback URL with simulated clients, and reports
the fan-out latency of edits to the other clients of their document,
deliveries per second, bytes, errors, disconnects, and the server's CPU and
memory (with --server-pid).

  tandem bench --docs 50 --clients 4 --rate 2000 --duration 30s --server-pid $PID
  tandem bench --ramp --rate 500 --p99-bound 50ms --server-pid $PID --json ramp.json
  tandem bench --idle 10000 --idle-docs --idle-release 90s --server-pid $PID

Flags:
`

// benchCommand runs `tandem bench`: a load run, a ramp (--ramp) or an idle
// measurement (--idle N). The report goes to stdout as a table and, with
// --json, to a file; a progress line goes to stderr while it runs.
func benchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	var (
		cfg        loadgen.Config
		pids       string
		jsonFile   string
		label      string
		quiet      bool
		logLevel   string
		ramp       bool
		rampCfg    loadgen.RampConfig
		idle       int
		idleCfg    loadgen.IdleConfig
		textRatio  float64
		seed       uint64
		clientsPer int
		cpuProfile string
	)
	fs.StringVar(&cfg.URL, "url", "ws://127.0.0.1:3030/", "the server's WebSocket URL (loopback only); comma-separated URLs of a cluster's nodes spread each document's clients over them")
	fs.IntVar(&cfg.Docs, "docs", 50, "documents (D)")
	fs.IntVar(&clientsPer, "clients", 4, "clients per document (C, at least 2)")
	fs.Float64Var(&cfg.Rate, "rate", 1000, "total edits per second (the first step's with --ramp)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured duration (of each step with --ramp)")
	fs.DurationVar(&cfg.Warmup, "warmup", 3*time.Second, "unmeasured load before the measured duration")
	fs.IntVar(&cfg.History, "history", 0, "changes each document has before the load, typed by its creator offline and uploaded in one burst")
	fs.Float64Var(&textRatio, "text-ratio", 0.5, "share of edits that are text splices; the rest are map sets")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "longest wait for deliveries after the last edit; later ones count as lost")
	fs.StringVar(&pids, "server-pid", "", "the server's process ID for CPU and RSS (comma-separated: summed)")
	fs.StringVar(&jsonFile, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&label, "label", "", "a name for the server in the report")
	fs.Uint64Var(&seed, "seed", 0, "random seed (0: random)")
	fs.BoolVar(&quiet, "quiet", false, "no progress line on stderr")
	fs.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error (log/slog on stderr)")
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write the load generator's own CPU profile (pprof) to this file")
	fs.BoolVar(&ramp, "ramp", false, "find the highest rate whose p99 fan-out stays under --p99-bound")
	fs.DurationVar(&rampCfg.P99Bound, "p99-bound", 50*time.Millisecond, "--ramp: the p99 fan-out bound")
	fs.Float64Var(&rampCfg.Factor, "ramp-factor", 1.5, "--ramp: each step's rate over the last")
	fs.IntVar(&rampCfg.Steps, "ramp-steps", 8, "--ramp: at most this many steps")
	fs.DurationVar(&rampCfg.Pause, "ramp-pause", 2*time.Second, "--ramp: pause between steps")
	fs.IntVar(&idle, "idle", 0, "open this many idle connections and report the server's RSS per connection (needs --server-pid)")
	fs.BoolVar(&idleCfg.Docs, "idle-docs", false, "--idle: each connection creates one small document")
	fs.DurationVar(&idleCfg.Settle, "idle-settle", 5*time.Second, "--idle: wait after opening before reading the RSS")
	fs.DurationVar(&idleCfg.Release, "idle-release", 0, "--idle: then close them and watch the RSS this long (0: don't)")
	fs.DurationVar(&idleCfg.SetupTimeout, "idle-open-timeout", 5*time.Minute, "--idle: longest time to open them all; then what opened is measured")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	serverPIDs, err := parsePIDs(pids)
	if err != nil {
		return err
	}
	for _, u := range strings.Split(cfg.URL, ",") {
		if err := loadgen.CheckURL(u); err != nil {
			return err
		}
	}
	if idle > 0 && strings.Contains(cfg.URL, ",") {
		return errors.New("--idle takes one --url")
	}
	if ramp && idle > 0 {
		return errors.New("--ramp and --idle are different modes: pick one")
	}
	cfg.ClientsPerDoc, cfg.ServerPIDs, cfg.Seed, cfg.Logger = clientsPer, serverPIDs, seed, log
	cfg.TextRatio = textRatio
	if textRatio == 0 {
		cfg.TextRatio = -1 // map sets only (the library's zero means its default)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("--cpu-profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	prog := newProgressLine(stderr, quiet)
	cfg.Progress = prog.load

	report := benchReport{Label: label, Started: time.Now().UTC().Format(time.RFC3339), Machine: machine(), Args: args}
	var table bytes.Buffer
	var partial error // the ramp stopped early; its steps so far are reported
	switch {
	case idle > 0:
		if len(serverPIDs) == 0 {
			return errors.New("--idle needs --server-pid: it measures the server's memory")
		}
		idleCfg.URL, idleCfg.Connections, idleCfg.ServerPIDs, idleCfg.Seed, idleCfg.Logger = cfg.URL, idle, serverPIDs, seed, log
		idleCfg.Progress = prog.idle
		res, err := loadgen.Idle(ctx, idleCfg)
		prog.done()
		if err != nil {
			return err
		}
		report.Mode, report.Idle = "idle", &res
		writeIdleTable(&table, label, res)
	case ramp:
		rampCfg.Run, rampCfg.Start = cfg, cfg.Rate
		rampCfg.Step = func(s loadgen.RampStep) {
			prog.done()
			verdict := "pass"
			if !s.Passed {
				verdict = "FAIL: " + strings.Join(s.Failed, "; ")
			}
			fmt.Fprintf(stderr, "step %.0f edits/s: p99 %.1f ms, %s\n", s.RateTarget, s.FanOut.P99, verdict)
		}
		res, err := loadgen.Ramp(ctx, rampCfg)
		prog.done()
		if err != nil && len(res.Steps) == 0 {
			return err
		}
		report.Mode, report.Ramp, partial = "ramp", &res, err
		writeRampTable(&table, label, cfg, res)
	default:
		res, err := loadgen.Run(ctx, cfg)
		prog.done()
		if err != nil {
			return err
		}
		report.Mode, report.Load = "load", &res
		writeLoadTable(&table, label, res)
	}
	if _, err := stdout.Write(table.Bytes()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if jsonFile != "" {
		b, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if err := os.WriteFile(jsonFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if partial != nil {
		return fmt.Errorf("ramp stopped early (the steps above are complete): %w", partial)
	}
	return nil
}

// benchReport is the JSON file: one of Load, Ramp or Idle, by Mode.
type benchReport struct {
	Mode    string              `json:"mode"`
	Label   string              `json:"label,omitempty"`
	Started string              `json:"started"`
	Args    []string            `json:"args"`
	Machine machineInfo         `json:"machine"`
	Load    *loadgen.Result     `json:"load,omitempty"`
	Ramp    *loadgen.RampResult `json:"ramp,omitempty"`
	Idle    *loadgen.IdleResult `json:"idle,omitempty"`
}

type machineInfo struct {
	CPUs     int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	MemBytes int64  `json:"mem_bytes"`
	GoOS     string `json:"goos"`
	GoArch   string `json:"goarch"`
}

// machine describes this machine from /proc (Linux); what it cannot read
// stays empty.
func machine() machineInfo {
	m := machineInfo{CPUs: runtime.NumCPU(), GoOS: runtime.GOOS, GoArch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) == 2 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemBytes = kb << 10
				}
				break
			}
		}
	}
	return m
}

func parsePIDs(s string) ([]int, error) {
	var pids []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		pid, err := strconv.Atoi(f)
		if err != nil || pid < 1 {
			return nil, fmt.Errorf("--server-pid: %q is not a process ID", f)
		}
		if _, err := loadgen.ReadProc(pid); err != nil {
			return nil, fmt.Errorf("--server-pid: %w", err)
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// progressLine writes the running state to stderr: rewritten in place on
// a terminal, one line every 5 s otherwise.
type progressLine struct {
	w     io.Writer
	quiet bool
	tty   bool
	last  time.Time
	dirty bool
}

func newProgressLine(w io.Writer, quiet bool) *progressLine {
	p := &progressLine{w: w, quiet: quiet}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progressLine) print(line string) {
	if p.quiet {
		return
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%-100s", line)
		p.dirty = true
		return
	}
	if time.Since(p.last) >= 5*time.Second {
		p.last = time.Now()
		fmt.Fprintln(p.w, line)
	}
}

func (p *progressLine) load(pr loadgen.Progress) {
	p.print(fmt.Sprintf("[%5.1fs %-10s] edits %d  deliveries %d  p99 %s  errors %d  disconnects %d  lag %s",
		pr.Elapsed.Seconds(), pr.Phase, pr.Edits, pr.Deliveries, ms(pr.P99), pr.Errors, pr.Disconnect, ms(pr.Lag)))
}

func (p *progressLine) idle(pr loadgen.Progress) {
	p.print(fmt.Sprintf("[%5.1fs %-10s] connections %d  errors %d  disconnects %d",
		pr.Elapsed.Seconds(), pr.Phase, pr.Edits, pr.Errors, pr.Disconnect))
}

// done ends the line in place, if one is showing.
func (p *progressLine) done() {
	if p.dirty {
		fmt.Fprintln(p.w)
		p.dirty = false
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func title(label, url string) string {
	if label != "" {
		return label + " (" + url + ")"
	}
	return url
}

func writeLoadTable(w io.Writer, label string, r loadgen.Result) {
	fmt.Fprintf(w, "tandem bench: %s: %d documents × %d clients, %.0f edits/s target, %.0fs measured after %.0fs warm-up\n",
		title(label, r.URL), r.Docs, r.ClientsPerDoc, r.RateTarget, r.DurationS, r.WarmupS)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-16s "+format+"\n", append([]any{k}, a...)...) }
	if r.History > 0 {
		row("history", "%d changes per document before the load, set up in %.1fs", r.History, r.SetupS)
	}
	row("edits", "%d (%.1f/s), %d skipped on ended connections; %.0f changes per document", r.Edits, r.EditRate, r.EditsSkipped, r.HistoryPerDoc)
	row("deliveries", "%d of %d (%.0f/s), lost %d", r.Delivered, r.Expected, r.DeliveryRate, r.Lost)
	if m := r.Missing; m != nil {
		row("missing", "%d edits reached no other client (%d deliveries), %d reached only some (%d deliveries)",
			m.NoClient, m.NoClientDeliveries, m.Some, m.SomeDeliveries)
	}
	f := r.FanOut
	row("fan-out", "p50 %.1f ms  p95 %.1f ms  p99 %.1f ms  max %.1f ms  (mean %.1f ms)", f.P50, f.P95, f.P99, f.Max, f.Mean)
	row("bytes", "in %s (%s/s), out %s (%s/s); messages in %d, out %d", mb(r.BytesIn), mb(int64(r.BytesInPerS)), mb(r.BytesOut), mb(int64(r.BytesOutPerS)), r.MessagesIn, r.MessagesOut)
	row("errors", "%d%s", r.Errors, samples(r.ErrorSamples))
	row("disconnects", "%s", disconnects(r.Disconnects))
	if s := r.Server; s != nil {
		row("server", "cpu %.0f%% of a core (%.0f µs/edit), rss %s → %s (peak %s)  [pids %v]",
			s.CPUPercent, s.CPUPerEditUS, mb(s.RSSStart), mb(s.RSSEnd), mb(s.RSSPeak), s.PIDs)
	}
	row("load generator", "cpu %.0f%% of a core (%.0f µs/edit), max rss %s; schedule lag max %.1f ms",
		r.Self.CPUPercent, r.Self.CPUPerEditUS, mb(r.Self.RSSPeak), r.MaxLagMS)
}

func writeRampTable(w io.Writer, label string, cfg loadgen.Config, r loadgen.RampResult) {
	fmt.Fprintf(w, "tandem bench --ramp: %s: %d documents × %d clients, %s per step, p99 bound %.0f ms\n",
		title(label, cfg.URL), cfg.Docs, cfg.ClientsPerDoc, cfg.Duration, r.P99BoundMS)
	fmt.Fprintf(w, "  %8s %9s %9s %7s %7s %7s %8s %6s %6s %8s %8s  %s\n",
		"target", "achieved", "deliv/s", "p50", "p95", "p99", "max", "lost", "errors", "srv cpu", "gen cpu", "verdict")
	for _, s := range r.Steps {
		verdict := "pass"
		if !s.Passed {
			verdict = "FAIL"
		}
		srv := "-"
		if s.Server != nil {
			srv = fmt.Sprintf("%.0f%%", s.Server.CPUPercent)
		}
		fmt.Fprintf(w, "  %8.0f %9.1f %9.0f %7.1f %7.1f %7.1f %8.1f %6d %6d %8s %7.0f%%  %s\n",
			s.RateTarget, s.EditRate, s.DeliveryRate, s.FanOut.P50, s.FanOut.P95, s.FanOut.P99, s.FanOut.Max,
			s.Lost, s.Errors, srv, s.Self.CPUPercent, verdict)
	}
	if r.Best > 0 {
		fmt.Fprintf(w, "  best: %.0f edits/s (%.1f achieved) with p99 ≤ %.0f ms and nothing lost\n", r.Best, r.BestAchieved, r.P99BoundMS)
	} else {
		fmt.Fprintf(w, "  best: no step passed\n")
	}
	fmt.Fprintf(w, "  limit: %s\n", r.Limit)
}

func writeIdleTable(w io.Writer, label string, r loadgen.IdleResult) {
	what := "without documents"
	if r.WithDocs {
		what = "each with one small document"
	}
	fmt.Fprintf(w, "tandem bench --idle: %s: %d connections %s, opened in %.1fs\n", title(label, r.URL), r.Connections, what, r.OpenS)
	row := func(k, format string, a ...any) { fmt.Fprintf(w, "  %-16s "+format+"\n", append([]any{k}, a...)...) }
	if r.SetupError != "" {
		row("INCOMPLETE", "%s", r.SetupError)
	}
	row("server rss", "before %s, after %s: %.0f bytes per connection", mb(r.RSSBefore), mb(r.RSSAfter), r.PerConnection)
	row("server cpu", "%.2f s while opening", r.ServerCPUSeconds)
	if rel := r.Release; rel != nil {
		within := "never within 20 % of the baseline"
		if rel.WithinS >= 0 {
			within = fmt.Sprintf("within 20 %% of the baseline after %.0f s", rel.WithinS)
		}
		row("after close", "%s after %.0f s (%.2f × before; min %s), %s", mb(rel.RSSEnd), rel.WaitS, rel.EndOverBefore, mb(rel.RSSMin), within)
	}
	row("errors", "%d%s", r.Errors, samples(r.ErrorSamples))
	row("disconnects", "%s", disconnects(r.Disconnects))
	row("load generator", "cpu %.1f s, max rss %s", r.Self.CPUSeconds, mb(r.Self.RSSPeak))
}

func samples(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return " (first: " + strings.Join(s, "; ") + ")"
}

func disconnects(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d × %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
