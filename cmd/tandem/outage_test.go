package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/internal/testwait"
)

// privatePostgres is a PostgreSQL server of the test's own, started from the
// installed server binaries in a temporary directory, so that the test can
// stop and start it without touching the shared one.
type privatePostgres struct {
	t    *testing.T
	bin  string
	dir  string
	port int
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	if len(bins) == 0 {
		t.Fatal("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (install the postgresql package)")
	}
	sort.Strings(bins)
	pg := &privatePostgres{t: t, bin: filepath.Dir(bins[len(bins)-1])}
	dir, err := os.MkdirTemp("", "tandem-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg.dir = dir
	t.Cleanup(func() {
		pg.stop()
		os.RemoveAll(dir)
	})
	if os.Geteuid() == 0 { // initdb refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pg.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pg.run("initdb", "-D", pg.data(), "-A", "trust", "-U", "postgres", "--no-sync")
	pg.start()
	return pg
}

func (pg *privatePostgres) data() string { return filepath.Join(pg.dir, "data") }

func (pg *privatePostgres) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", pg.port)
}

func (pg *privatePostgres) run(tool string, args ...string) {
	pg.t.Helper()
	path := filepath.Join(pg.bin, tool)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		pg.t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

func (pg *privatePostgres) start() {
	pg.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1", pg.port, pg.dir)
	pg.run("pg_ctl", "-D", pg.data(), "-o", opts, "-l", filepath.Join(pg.dir, "log"), "-w", "-t", "30", "start")
}

// stop shuts the server down at once, as a crash or a network cut would
// look to its clients.
func (pg *privatePostgres) stop() {
	if _, err := os.Stat(filepath.Join(pg.data(), "postmaster.pid")); err != nil {
		return
	}
	pg.run("pg_ctl", "-D", pg.data(), "-m", "immediate", "-w", "stop")
}

func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	pg := startPrivatePostgres(t)
	s := startServer(t, nil, "--database-url", pg.url())
	testwait.For(t, 10*time.Second, "readyz 200", func() bool { return s.readyz() == 200 })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers, wg := startWriters(ctx, 3, s.url)
	acked := func() []int64 {
		out := make([]int64, len(writers))
		for i, w := range writers {
			out[i] = w.acked.Load()
		}
		return out
	}
	sessions := func() (n int64) {
		for _, w := range writers {
			n += w.sessions.Load()
		}
		return n
	}
	testwait.For(t, 20*time.Second, "writes before the outage", func() bool {
		for _, a := range acked() {
			if a < 10 {
				return false
			}
		}
		return true
	})

	pg.stop()
	sessionsBefore := sessions()
	testwait.For(t, 15*time.Second, "readyz 503 during the outage", func() bool { return s.readyz() == 503 })
	time.Sleep(500 * time.Millisecond) // commits that raced the stop are advertised by now
	during := acked()
	time.Sleep(1500 * time.Millisecond)
	if after := acked(); fmt.Sprint(after) != fmt.Sprint(during) {
		t.Fatalf("changes were advertised while Postgres was down: acked %v then %v", during, after)
	}
	for i, w := range writers {
		if int64(len(w.hashesSnapshot())-1) <= during[i] {
			t.Fatalf("writer %d made no change during the outage: the test checks nothing", i)
		}
	}

	pg.start()
	testwait.For(t, 30*time.Second, "readyz 200 after the outage", func() bool { return s.readyz() == 200 })
	defer func() {
		if t.Failed() {
			t.Log(s.logs())
		}
	}()
	testwait.For(t, 30*time.Second, "changes held during the outage to be advertised", func() bool {
		now := acked()
		for i := range now {
			if now[i] <= during[i] {
				return false
			}
		}
		return true
	})
	if n := sessions(); n != sessionsBefore {
		t.Errorf("writers reconnected %d times during the outage: the server dropped connections", n-sessionsBefore)
	}
	cancel()
	wg.Wait()

	vctx, vcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer vcancel()
	for _, w := range writers {
		if err := w.verify(vctx, s.url()); err != nil {
			t.Error(err)
		}
	}
	logs := s.logs()
	if n := strings.Count(logs, "store unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
	if n := strings.Count(logs, "store recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", n, logs)
	}
	t.Logf("acked before/after outage: %v → %v", during, acked())
}
