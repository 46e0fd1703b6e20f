package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

var pprofRE = regexp.MustCompile(`msg="profiles served" addr=(\S+)`)

// TestPprofAddr: with --pprof-addr the binary serves the Go profiles on a
// listener of its own, and the public address does not.
func TestPprofAddr(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil, "--data-dir", t.TempDir(), "--pprof-addr", "127.0.0.1:0")
	m := pprofRE.FindStringSubmatch(srv.logs())
	if m == nil {
		t.Fatalf("no pprof address in the log:\n%s", srv.logs())
	}
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + m[1] + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Errorf("heap profile: %d %.80q", code, body)
	}
	if code, _ := get("http://" + srv.addr + "/debug/pprof/heap?debug=1"); code == http.StatusOK {
		t.Error("the public address serves profiles")
	}
}
