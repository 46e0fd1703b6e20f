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
	"github.com/coder/websocket"

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

// peer is a minimal automerge-repo client in Go: one WebSocket, one
// document, one sync state.
type peer struct {
	c     *websocket.Conn
	id    wire.PeerID
	docID wire.DocID
	doc   *automerge.Doc
	ss    *automerge.SyncState
	// A reader goroutine feeds in: coder/websocket closes the connection
	// when a Read's context ends, so reads with timeouts go through it.
	in   chan wire.Message
	errc chan error
}

func dialPeer(ctx context.Context, url string, id wire.PeerID, docID wire.DocID, doc *automerge.Doc) (*peer, error) {
	c, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(200 << 20)
	p := &peer{c: c, id: id, docID: docID, doc: doc, ss: automerge.NewSyncState(doc),
		in: make(chan wire.Message, 64), errc: make(chan error, 1)}
	go func() {
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				p.errc <- err
				return
			}
			m, err := wire.Decode(b)
			if err != nil {
				p.errc <- err
				return
			}
			p.in <- m
		}
	}()
	if err := p.write(ctx, wire.Message{Type: wire.TypeJoin, SenderID: id, SupportedProtocolVersions: []string{"1"}}); err != nil {
		c.CloseNow()
		return nil, err
	}
	m, err := p.read(ctx)
	if err != nil || m.Type != wire.TypePeer {
		c.CloseNow()
		return nil, fmt.Errorf("handshake: %+v %v", m, err)
	}
	return p, nil
}

func (p *peer) close() { p.c.CloseNow() }

func (p *peer) write(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return p.c.Write(ctx, websocket.MessageBinary, b)
}

// read returns the next message, or ctx's error when none comes in time
// (the connection stays open).
func (p *peer) read(ctx context.Context) (wire.Message, error) {
	select {
	case m := <-p.in:
		return m, nil
	case err := <-p.errc:
		p.errc <- err
		return wire.Message{}, err
	case <-ctx.Done():
		return wire.Message{}, ctx.Err()
	}
}

// sendSync sends the next sync message, if the sync state has one.
func (p *peer) sendSync(ctx context.Context, typ string) error {
	sm, ok := p.ss.GenerateMessage()
	if !ok {
		return nil
	}
	return p.write(ctx, wire.Message{Type: typ, SenderID: p.id, DocumentID: p.docID, Data: sm.Bytes()})
}

// receive reads one message; for a sync message it applies it and returns
// the server's heads.
func (p *peer) receive(ctx context.Context) (wire.Message, []automerge.ChangeHash, error) {
	m, err := p.read(ctx)
	if err != nil {
		return m, nil, err
	}
	if m.Type != wire.TypeSync {
		return m, nil, nil
	}
	sm, err := p.ss.ReceiveMessage(m.Data)
	if err != nil {
		return m, nil, err
	}
	return m, sm.Heads(), nil
}

// fetch gets a document with a fresh client and syncs until nothing more
// arrives for a while.
func fetch(ctx context.Context, url string, id wire.DocID) (*automerge.Doc, error) {
	doc := automerge.New()
	p, err := dialPeer(ctx, url, wire.PeerID(fmt.Sprintf("peer-fetch-%d", time.Now().UnixNano())), id, doc)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if err := p.sendSync(ctx, wire.TypeRequest); err != nil {
		return nil, err
	}
	for {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, _, err := p.receive(rctx)
		cancel()
		switch {
		case err != nil && rctx.Err() != nil && ctx.Err() == nil:
			return doc, nil // quiet: synced
		case err != nil:
			return nil, err
		case m.Type == wire.TypeDocUnavailable:
			return nil, errors.New("document unavailable")
		}
		if err := p.sendSync(ctx, wire.TypeSync); err != nil {
			return nil, err
		}
	}
}

func containsHash(hs []automerge.ChangeHash, h automerge.ChangeHash) bool {
	return slices.Contains(hs, h)
}
