package hostile

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/internal/leb128"
	"github.com/tandem-sync/tandem/sync/wire"
)

// repoRoot is the repository's root, from this package's directory.
const repoRoot = "../.."

// server is a tandem process started for the suite.
type server struct {
	url    string // ws://127.0.0.1:port
	http   string // http://127.0.0.1:port
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// binary returns a tandem binary: $TANDEM_BIN, or one built for the test.
func binary(t *testing.T) string {
	if b := os.Getenv("TANDEM_BIN"); b != "" {
		return b
	}
	out := filepath.Join(t.TempDir(), "tandem")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/tandem")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T, args ...string) *server {
	addr := freeAddr(t)
	s := &server{addr: addr, url: "ws://" + addr, http: "http://" + addr, exited: make(chan struct{}), log: &syncBuffer{}}
	s.cmd = exec.Command(binary(t), append([]string{"--addr", addr, "--data-dir", t.TempDir(), "--log-level", "warn"}, args...)...)
	s.cmd.Stderr = s.log
	s.cmd.Stdout = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("server log:\n%s", tail(s.log.String(), 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, err := http.Get(s.http + "/healthz"); err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("server exited at start:\n%s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("server not healthy after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// alive fails t unless the process runs and answers /healthz.
func (s *server) alive(t *testing.T) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("the server died: %v\n%s", s.cmd.ProcessState, tail(s.log.String(), 4000))
	default:
	}
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Get(s.http + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("healthz: %s", r.Status)
	}
}

// memory returns the server's resident set and its peak so far, in bytes.
func (s *server) memory(t *testing.T) (rss, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read the server's memory: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// docJSON is the document's content from the REST API.
func (s *server) docJSON(t *testing.T, id wire.DocID) map[string]any {
	t.Helper()
	r, err := http.Get(s.http + "/api/v1/docs/" + string(id) + "/content")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(r.Body).Decode(&out); err != nil || r.StatusCode != 200 {
		t.Fatalf("GET doc %s: %s, %v", id, r.Status, err)
	}
	return out
}

// metric returns the value of one sample of the server's /metrics (0 when
// it is absent).
func (s *server) metric(t *testing.T, sample string) float64 {
	t.Helper()
	r, err := http.Get(s.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %q", sample, line)
			}
			return f
		}
	}
	return 0
}

// clientReport is what bystanders.mjs reports for one client.
type clientReport struct {
	Sent         int   `json:"sent"`
	Seen         int   `json:"seen"`
	MaxLatencyMs int   `json:"maxLatencyMs"`
	Closes       []int `json:"closes"`
}

// bystanders runs the two stock clients of clients/js/test/bystanders.mjs.
type bystanders struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	log   *syncBuffer

	mu     sync.Mutex
	doc    wire.DocID
	a, b   clientReport
	maxLat int // the longest delivery since the last check
	lines  int
}

func startBystanders(t *testing.T, s *server) *bystanders {
	js := filepath.Join(repoRoot, "clients", "js")
	if _, err := os.Stat(filepath.Join(js, "node_modules", "@automerge", "automerge-repo")); err != nil {
		t.Fatalf("the bystanders need the stock npm clients: run `npm install` in clients/js (scripts/test.sh does): %v", err)
	}
	by := &bystanders{log: &syncBuffer{}}
	by.cmd = exec.Command("node", filepath.Join(js, "test", "bystanders.mjs"), s.url, "100")
	by.cmd.Stderr = by.log
	out, err := by.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if by.stdin, err = by.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := by.cmd.Start(); err != nil {
		t.Fatalf("node: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r struct {
				Doc string       `json:"doc"`
				A   clientReport `json:"a"`
				B   clientReport `json:"b"`
			}
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			by.mu.Lock()
			by.doc = wire.DocID(strings.TrimPrefix(r.Doc, "automerge:"))
			by.a, by.b = r.A, r.B
			by.maxLat = max(by.maxLat, r.A.MaxLatencyMs, r.B.MaxLatencyMs)
			by.lines++
			by.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		by.stdin.Close()
		_ = by.cmd.Process.Kill()
		_ = by.cmd.Wait()
		<-done
		if t.Failed() {
			t.Logf("bystanders' stderr:\n%s", tail(by.log.String(), 2000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		by.mu.Lock()
		ok := by.doc != "" && by.a.Seen > 0 && by.b.Seen > 0
		by.mu.Unlock()
		if ok {
			return by
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bystanders did not start syncing in 30s:\n%s", by.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (by *bystanders) docID() wire.DocID {
	by.mu.Lock()
	defer by.mu.Unlock()
	return by.doc
}

// maxDelivery is the longest either bystander waited for the other's edit
// while the attacks ran.
const maxDelivery = 5 * time.Second

// check fails t unless both bystanders still hold their first connection,
// every delivery since the last check took less than maxDelivery, and the
// edits they make from now on reach each other within maxDelivery.
func (by *bystanders) check(t *testing.T) {
	t.Helper()
	by.mu.Lock()
	sentA, sentB := by.a.Sent, by.b.Sent
	by.mu.Unlock()
	deadline := time.Now().Add(maxDelivery + time.Second)
	for {
		by.mu.Lock()
		a, b, lat := by.a, by.b, by.maxLat
		by.mu.Unlock()
		if len(a.Closes)+len(b.Closes) > 0 {
			t.Fatalf("a bystander was disconnected: close codes %v and %v", a.Closes, b.Closes)
		}
		if b.Seen > sentA && a.Seen > sentB {
			if time.Duration(lat)*time.Millisecond > maxDelivery {
				t.Fatalf("a bystander's edit took %d ms to reach the other", lat)
			}
			by.mu.Lock()
			by.maxLat = 0
			by.mu.Unlock()
			t.Logf("bystanders: %d and %d edits made, longest delivery %d ms", a.Sent, b.Sent, lat)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bystanders' edits stopped arriving: a sent %d (b saw %d), b sent %d (a saw %d) since %d/%d",
				a.Sent, b.Seen, b.Sent, a.Seen, sentA, sentB)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// attacker is a protocol client under the test's full control.
type attacker struct {
	c      *websocket.Conn
	id     wire.PeerID
	server wire.PeerID
}

func dialAttacker(t *testing.T, s *server, id string) *attacker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(256 << 20)
	a := &attacker{c: c, id: wire.PeerID(id)}
	t.Cleanup(func() { c.CloseNow() })
	if err := a.send(ctx, wire.Message{Type: wire.TypeJoin, SenderID: a.id, SupportedProtocolVersions: []string{wire.ProtocolVersion}}); err != nil {
		t.Fatal(err)
	}
	m, err := a.read(ctx)
	if err != nil || m.Type != wire.TypePeer {
		t.Fatalf("handshake: %+v, %v", m, err)
	}
	a.server = m.SenderID
	return a
}

func (a *attacker) send(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return err
	}
	return a.c.Write(ctx, websocket.MessageBinary, b)
}

func (a *attacker) read(ctx context.Context) (wire.Message, error) {
	_, b, err := a.c.Read(ctx)
	if err != nil {
		return wire.Message{}, err
	}
	return wire.Decode(b)
}

// sync sends a sync message for doc.
func (a *attacker) sync(ctx context.Context, doc wire.DocID, typ string, data []byte) error {
	return a.send(ctx, wire.Message{Type: typ, SenderID: a.id, TargetID: a.server, DocumentID: doc, Data: data})
}

// closed reads until the server closes the connection and returns the
// close code and the error messages it sent first; -1 when the connection
// ended without a close frame, 0 when it was still open at the deadline.
func (a *attacker) closed(timeout time.Duration) (code websocket.StatusCode, errs []string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		m, err := a.read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 0, errs
			}
			return websocket.CloseStatus(err), errs
		}
		if m.Type == wire.TypeError {
			errs = append(errs, m.ErrorMessage)
		}
	}
}

// syncMessage is an Automerge sync message (V1) with no heads, needs or
// haves, carrying chunks as its changes.
func syncMessage(chunks ...[]byte) []byte {
	b := []byte{0x42, 0, 0, 0}
	b = leb128.AppendUint(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = leb128.AppendUint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// rawConn is a WebSocket connection driven frame by frame, for what no
// client library sends.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

// dialRaw upgrades a TCP connection by hand; the caller frames everything.
func dialRaw(t *testing.T, s *server) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	// A small send buffer, so that what the attacker has written is close
	// to what the server has read: the frame tests bound the latter by it.
	_ = c.(*net.TCPConn).SetWriteBuffer(64 << 10)
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", s.addr)
	rc := &rawConn{Conn: c, r: bufio.NewReader(c)}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := rc.r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		t.Fatalf("upgrade: %q, %v", status, err)
	}
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return rc
}

// frameHeader writes a masked client frame header announcing n bytes.
func (rc *rawConn) frameHeader(fin bool, op byte, n uint64) error {
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 1<<16:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		for i := 7; i >= 0; i-- {
			b = append(b, byte(n>>(8*i)))
		}
	}
	b = append(b, 0, 0, 0, 0) // a zero mask: the payload goes as is
	_, err := rc.Write(b)
	return err
}

func (rc *rawConn) frame(fin bool, op byte, payload []byte) error {
	if err := rc.frameHeader(fin, op, uint64(len(payload))); err != nil {
		return err
	}
	_, err := rc.Write(payload)
	return err
}

// closeCode reads server frames until a close frame and returns its code;
// -1 when the connection ended without one.
func (rc *rawConn) closeCode(timeout time.Duration) int {
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	for {
		h := make([]byte, 2)
		if _, err := io.ReadFull(rc.r, h); err != nil {
			return -1
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			e := make([]byte, 2)
			if _, err := io.ReadFull(rc.r, e); err != nil {
				return -1
			}
			n = uint64(e[0])<<8 | uint64(e[1])
		case 127:
			e := make([]byte, 8)
			if _, err := io.ReadFull(rc.r, e); err != nil {
				return -1
			}
			n = 0
			for _, x := range e {
				n = n<<8 | uint64(x)
			}
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(rc.r, p); err != nil {
			return -1
		}
		if h[0]&0x0f == 8 {
			if len(p) < 2 {
				return 1005
			}
			return int(p[0])<<8 | int(p[1])
		}
	}
}

// errorsJoin keeps the first few errors of a batch readable.
func errorsJoin(errs []error) error {
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}
