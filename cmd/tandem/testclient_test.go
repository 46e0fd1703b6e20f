package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/internal/wstest"
	"github.com/tandem-sync/tandem/sync/wire"
)

// These tests drive the real tandem binary as a subprocess. TANDEM_BIN
// names a built binary; without it, TestMain builds one.

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)

func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_BIN") == "" {
		dir, err := os.MkdirTemp("", "tandem-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bin := filepath.Join(dir, "tandem")
		cmd := exec.Command("go", "build", "-o", bin, ".")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build tandem:", err)
			os.Exit(1)
		}
		os.Setenv("TANDEM_BIN", bin)
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// server is one run of the tandem binary.
type server struct {
	t    *testing.T
	args []string
	env  []string
	addr string
	cmd  *exec.Cmd
	done chan error
	mu   sync.Mutex
	log  strings.Builder
}

// startServer runs tandem with args (plus --addr 127.0.0.1:0 unless given)
// and waits until it listens.
func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	s := &server{t: t, args: args, env: env}
	s.start("127.0.0.1:0")
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) start(addr string) {
	s.t.Helper()
	cmd := exec.Command(os.Getenv("TANDEM_BIN"), append([]string{"--addr", addr}, s.args...)...)
	cmd.Env = append(os.Environ(), s.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.done = cmd, make(chan error, 1)
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-found:
		s.addr = a
	case <-time.After(20 * time.Second):
		s.t.Fatalf("tandem did not start:\n%s", s.logs())
	}
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

func (s *server) url() string { return "ws://" + s.addr }

// kill ends the process with SIGKILL and waits for it.
func (s *server) kill() {
	if s.cmd == nil || s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	s.cmd.ProcessState = &os.ProcessState{}
}

// restart starts the binary again on the same address.
func (s *server) restart() {
	s.t.Helper()
	addr := s.addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.start(addr)
		if s.addr == addr || time.Now().After(deadline) {
			return
		}
	}
}

func (s *server) readyz() int {
	resp, err := http.Get("http://" + s.addr + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// fetch gets a document with a fresh client and syncs until nothing more
// arrives for a while.
func fetch(ctx context.Context, url string, id wire.DocID) (*automerge.Doc, error) {
	doc := automerge.New()
	p, err := wstest.Dial(ctx, url, wire.PeerID(fmt.Sprintf("peer-fetch-%d", time.Now().UnixNano())), id, doc)
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := p.SendSync(ctx, wire.TypeRequest); err != nil {
		return nil, err
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, _, err := p.Receive(rctx)
		cancel()
		switch {
		case err != nil && rctx.Err() != nil && ctx.Err() == nil:
			return doc, nil // quiet: synced
		case err != nil:
			return nil, err
		case m.Type == wire.TypeDocUnavailable:
			return nil, errors.New("document unavailable")
		}
		if err := p.SendSync(ctx, wire.TypeSync); err != nil {
			return nil, err
		}
	}
}

func containsHash(hs []automerge.ChangeHash, h automerge.ChangeHash) bool {
	return slices.Contains(hs, h)
}
