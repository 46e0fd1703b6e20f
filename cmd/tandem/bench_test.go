package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestBenchCommand runs `tandem bench` in its three modes against the real
// binary, briefly, and checks the table and the JSON report.
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil, "--data-dir", t.TempDir(), "--idle-timeout", "1s")
	pid := strconv.Itoa(srv.cmd.Process.Pid)
	url := srv.url() + "/"
	dir := t.TempDir()
	bench := func(t *testing.T, name string, args ...string) (string, benchReport) {
		t.Helper()
		file := filepath.Join(dir, name+".json")
		var out bytes.Buffer
		args = append([]string{"bench", "--url", url, "--server-pid", pid, "--json", file, "--quiet", "--label", name}, args...)
		if err := run(context.Background(), args, func(string) string { return "" }, &out, io.Discard); err != nil {
			t.Fatalf("tandem %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var rep benchReport
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("report: %v\n%s", err, b)
		}
		if rep.Label != name || rep.Machine.CPUs < 1 {
			t.Errorf("report header %+v", rep)
		}
		return out.String(), rep
	}

	t.Run("load", func(t *testing.T) {
		table, rep := bench(t, "load", "--docs", "2", "--clients", "3", "--rate", "40", "--duration", "1s", "--warmup", "200ms")
		r := rep.Load
		if rep.Mode != "load" || r == nil || r.Edits == 0 || r.Lost != 0 || r.Delivered != 2*r.Edits || r.Server == nil || r.Server.CPUSeconds <= 0 {
			t.Fatalf("report %+v", r)
		}
		for _, want := range []string{"fan-out", "p99", "deliveries", "server", "load generator", "disconnects      none"} {
			if !strings.Contains(table, want) {
				t.Errorf("table lacks %q:\n%s", want, table)
			}
		}
	})
	t.Run("ramp", func(t *testing.T) {
		table, rep := bench(t, "ramp", "--ramp", "--docs", "2", "--clients", "2", "--rate", "20", "--ramp-factor", "2",
			"--ramp-steps", "2", "--duration", "700ms", "--warmup", "0s", "--ramp-pause", "100ms", "--p99-bound", "10s")
		r := rep.Ramp
		if rep.Mode != "ramp" || r == nil || len(r.Steps) != 2 || r.Best != 40 || !strings.Contains(r.Limit, "step limit") {
			t.Fatalf("ramp %+v", r)
		}
		if !strings.Contains(table, "best: 40 edits/s") {
			t.Errorf("table:\n%s", table)
		}
	})
	t.Run("idle", func(t *testing.T) {
		table, rep := bench(t, "idle", "--idle", "20", "--idle-docs", "--idle-settle", "200ms", "--idle-release", "2s")
		r := rep.Idle
		if rep.Mode != "idle" || r == nil || r.Connections != 20 || r.RSSBefore == 0 || r.RSSAfter == 0 || r.Release == nil || r.Errors != 0 {
			t.Fatalf("idle %+v", r)
		}
		if !strings.Contains(table, "bytes per connection") || !strings.Contains(table, "after close") {
			t.Errorf("table:\n%s", table)
		}
	})
}
