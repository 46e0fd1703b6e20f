package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/internal/wstest"
	"github.com/tandem-sync/tandem/sync/wire"
)

// These tests run several tandem nodes on one Postgres database and one
// NATS server (issue 14). TANDEM_TEST_NATS_URL names the NATS server
// (default nats://127.0.0.1:4222; scripts/test.sh starts it); the tests
// fail when it is unreachable. Each test uses its own database and its own
// subject prefix, so that tests in parallel do not hear each other.

// testNATSURL returns the NATS server the tests use, after checking that
// it accepts connections.
func testNATSURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("TANDEM_TEST_NATS_URL")
	if u == "" {
		u = "nats://127.0.0.1:4222"
	}
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatalf("TANDEM_TEST_NATS_URL %q: %v", u, err)
	}
	c, err := net.DialTimeout("tcp", pu.Host, 2*time.Second)
	if err != nil {
		t.Fatalf("the cluster tests need a NATS server: cannot connect to %s (set TANDEM_TEST_NATS_URL; scripts/test.sh starts one): %v", pu.Host, err)
	}
	c.Close()
	return u
}

// testCluster is n tandem nodes sharing one fresh database.
type testCluster struct {
	t    *testing.T
	db   string
	args []string

	mu    sync.Mutex // guards nodes' restarts against url
	nodes []*server
}

// startCluster starts n nodes with the extra arguments.
func startCluster(t *testing.T, n int, natsURL string, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, db: storetest.NewPostgresDatabase(t)}
	c.args = append([]string{"--database-url", c.db, "--nats-url", natsURL,
		"--nats-subject-prefix", "test" + hex.EncodeToString(storetest.RandomBytes(6))}, extra...)
	for range n {
		c.add()
	}
	return c
}

// add starts one more node.
func (c *testCluster) add() *server {
	c.t.Helper()
	s := startServer(c.t, nil, c.args...)
	c.mu.Lock()
	c.nodes = append(c.nodes, s)
	c.mu.Unlock()
	return s
}

// url returns node i's URL (modulo the number of nodes).
func (c *testCluster) url(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i%len(c.nodes)].url()
}

func (c *testCluster) node(i int) *server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i%len(c.nodes)]
}

// rotating returns a URL function for a client that starts on node first
// and moves to the next node every time it (re)connects.
func (c *testCluster) rotating(first int) func() string {
	var n atomic.Int64
	n.Store(int64(first))
	return func() string { return c.url(int(n.Add(1) - 1)) }
}

// logs returns every node's log, for a failure message.
func (c *testCluster) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out string
	for i, s := range c.nodes {
		out += fmt.Sprintf("--- node %d ---\n%s", i, s.logs())
	}
	return out
}

// commitKey sets key to value in doc and commits it.
func commitKey(t *testing.T, doc *automerge.Doc, key string, value any) automerge.ChangeHash {
	t.Helper()
	if err := doc.RootMap().Set(key, value); err != nil {
		t.Fatal(err)
	}
	h, err := doc.Commit("set " + key)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// syncUntil exchanges sync messages with the server until cond holds or
// ctx ends. cond is checked after every message, and after every 100 ms
// without one (with a zero message).
func syncUntil(ctx context.Context, p *wstest.Peer, cond func(m wire.Message, heads []automerge.ChangeHash) bool) error {
	for {
		if err := p.SendSync(ctx, wire.TypeSync); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		m, heads, err := p.Receive(rctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && rctx.Err() != nil:
			m, heads = wire.Message{}, nil // nothing yet
		case err != nil:
			return err
		}
		if cond(m, heads) {
			return nil
		}
	}
}

// hasKeys reports whether doc's root map has every key.
func hasKeys(doc *automerge.Doc, keys []string) bool {
	for _, k := range keys {
		if v, err := doc.RootMap().Get(k); err != nil || v.Kind() == automerge.KindVoid {
			return false
		}
	}
	return true
}

// TestClusterConverge checks the basics across three nodes: a document
// created through one node is found through another; clients of one
// document on three nodes writing at once converge; presence crosses
// nodes; a deletion on one node makes the document unavailable on all.
func TestClusterConverge(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, testNATSURL(t))
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// Created on node 0, found on node 1 (which has no room for it yet).
	docID := wire.NewDocID()
	docA := automerge.New()
	created := commitKey(t, docA, "created", "on node 0")
	pa, err := wstest.Dial(ctx, c.url(0), "peer-a", docID, docA)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	if err := syncUntil(ctx, pa, func(_ wire.Message, heads []automerge.ChangeHash) bool { return containsHash(heads, created) }); err != nil {
		t.Fatalf("node 0 never acknowledged the first change: %v", err)
	}
	got, err := fetch(ctx, c.url(1), docID)
	if err != nil {
		t.Fatalf("fetch from node 1: %v\n%s", err, c.logs())
	}
	if !hasKeys(got, []string{"created"}) {
		t.Fatalf("node 1 serves the document without the change made through node 0")
	}

	// One client per node on the same document, all writing at once.
	names := []string{"a", "b", "c"}
	peers := []*wstest.Peer{pa}
	for i, name := range names[1:] {
		p, err := wstest.Dial(ctx, c.url(i+1), wire.PeerID("peer-"+name), docID, automerge.New())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.SendSync(ctx, wire.TypeRequest); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	const perClient = 15
	var all []string
	for _, name := range names {
		for i := range perClient {
			all = append(all, fmt.Sprintf("%s-%d", name, i))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(peers))
	for n, p := range peers {
		wg.Go(func() {
			written := 0
			errs[n] = syncUntil(ctx, p, func(wire.Message, []automerge.ChangeHash) bool {
				if written < perClient && p.Doc.RootMap().Len() > 0 {
					commitKey(t, p.Doc, fmt.Sprintf("%s-%d", names[n], written), int64(written))
					written++
					return false // send it first
				}
				return written == perClient && hasKeys(p.Doc, all)
			})
		})
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			var missing []string
			for _, k := range all {
				if !hasKeys(peers[n].Doc, []string{k}) {
					missing = append(missing, k)
				}
			}
			t.Fatalf("client on node %d did not converge: %v; it lacks %v\n%s", n, err, missing, c.logs())
		}
	}
	heads := peers[0].Doc.Heads()
	for n, p := range peers[1:] {
		if !sameHashes(p.Doc.Heads(), heads) {
			t.Errorf("client on node %d has heads %v, node 0's client %v", n+1, p.Doc.Heads(), heads)
		}
	}

	// A change larger than NATS takes in one message (1 MiB by default)
	// reaches the other nodes through the store.
	big := storetest.RandomBytes(3 << 19)
	bigHash := commitKey(t, pa.Doc, "big", big)
	bctx, bcancel := context.WithTimeout(ctx, 10*time.Second)
	if err := syncUntil(bctx, pa, func(_ wire.Message, heads []automerge.ChangeHash) bool { return containsHash(heads, bigHash) }); err != nil {
		t.Fatalf("node 0 did not acknowledge a 1.5 MiB change: %v", err)
	}
	err = syncUntil(bctx, peers[2], func(wire.Message, []automerge.ChangeHash) bool {
		v, err := peers[2].Doc.RootMap().Get("big")
		return err == nil && v.Kind() == automerge.KindBytes && len(v.Bytes()) == len(big)
	})
	bcancel()
	if err != nil {
		t.Fatalf("a 1.5 MiB change made through node 0 did not reach node 2's client: %v\n%s", err, c.logs())
	}

	// Presence from node 0 reaches node 2's client.
	eph := wire.Message{Type: wire.TypeEphemeral, SenderID: "peer-a", DocumentID: docID, SessionID: "session-a", Count: 1, Data: []byte{0xa0}}
	if err := pa.Write(ctx, eph); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	err = syncUntil(pctx, peers[2], func(m wire.Message, _ []automerge.ChangeHash) bool {
		return m.Type == wire.TypeEphemeral && m.SenderID == "peer-a" && m.SessionID == "session-a"
	})
	pcancel()
	if err != nil {
		t.Fatalf("presence from node 0 did not reach node 2: %v", err)
	}

	// Deleted through node 0: node 1's and node 2's clients are told.
	restCall(t, c.node(0), "DELETE", "/api/v1/docs/"+string(docID), "")
	for n, p := range peers[1:] {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		err := syncUntil(dctx, p, func(m wire.Message, _ []automerge.ChangeHash) bool { return m.Type == wire.TypeDocUnavailable })
		dcancel()
		if err != nil {
			t.Errorf("client on node %d not told of the deletion: %v", n+1, err)
		}
	}
	if _, err := fetch(ctx, c.url(2), docID); err == nil || err.Error() != "document unavailable" {
		t.Errorf("fetch of the deleted document from node 2: %v, want document unavailable", err)
	}
}

func sameHashes(a, b []automerge.ChangeHash) bool {
	if len(a) != len(b) {
		return false
	}
	for _, h := range a {
		if !containsHash(b, h) {
			return false
		}
	}
	return true
}

// observe keeps a client of the document connected to some node (moving
// on when its node dies) until ctx ends, so that every node it visits
// holds the document's room and follows the others' changes.
func observe(ctx context.Context, id wire.PeerID, docID wire.DocID, url func() string) {
	doc := automerge.New()
	for ctx.Err() == nil {
		p, err := wstest.Dial(ctx, url(), id, docID, doc)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		_ = p.SendSync(ctx, wire.TypeRequest)
		_ = syncUntil(ctx, p, func(m wire.Message, _ []automerge.ChangeHash) bool { return m.Type == wire.TypeDocUnavailable })
		p.Close()
	}
}

// verifyOnEveryNode checks each writer's acknowledged changes through
// every node.
func verifyOnEveryNode(t *testing.T, c *testCluster, writers []*crashWriter) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	total := 0
	for _, w := range writers {
		total += int(w.acked.Load()) + 1
		for i := range len(c.nodes) {
			if err := w.verify(ctx, c.url(i)); err != nil {
				t.Errorf("through node %d: %v", i, err)
			}
		}
	}
	return total
}

// TestClusterNodeKill kills nodes with SIGKILL while clients write
// through all of them: no change a client saw acknowledged is lost, and
// the clients carry on through the other nodes. Observers on other nodes
// keep rooms for the same documents, which must follow.
func TestClusterNodeKill(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, testNATSURL(t), "--compact-changes", "100")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := make([]*crashWriter, 4)
	var wg sync.WaitGroup
	for i := range writers {
		w := newCrashWriter(i)
		writers[i] = w
		wg.Go(func() { w.run(ctx, c.rotating(i)) })
		wg.Go(func() { observe(ctx, wire.PeerID(fmt.Sprint("peer-observer-", i)), w.docID, c.rotating(i+1)) })
	}
	const cycles = 4
	for range cycles {
		time.Sleep(time.Duration(300+rand.IntN(300)) * time.Millisecond)
		s := c.node(rand.IntN(len(c.nodes)))
		c.mu.Lock()
		s.kill()
		c.mu.Unlock()
		time.Sleep(200 * time.Millisecond) // its clients move on meanwhile
		c.mu.Lock()
		s.restart()
		c.mu.Unlock()
	}
	time.Sleep(400 * time.Millisecond)
	cancel()
	wg.Wait()

	total := verifyOnEveryNode(t, c, writers)
	sessions := 0
	for _, w := range writers {
		sessions += int(w.sessions.Load())
	}
	t.Logf("%d kills, %d writers, %d sessions, %d acknowledged changes checked through each of %d nodes",
		cycles, len(writers), sessions, total, len(c.nodes))
	if total < 10*len(writers) || sessions <= len(writers) {
		t.Fatalf("only %d changes acknowledged in %d sessions: the test exercised too little\n%s", total, sessions, c.logs())
	}
}

// privateNATS is a nats-server process of a test's own, on a free port.
type privateNATS struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func startPrivateNATS(t *testing.T) *privateNATS {
	t.Helper()
	testNATSURL(t) // the machine's NATS is what the other tests need; fail early the same way
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := &privateNATS{t: t, port: port}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *privateNATS) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

func (n *privateNATS) start() {
	n.t.Helper()
	bin := "/usr/sbin/nats-server"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("nats-server"); err != nil {
			n.t.Fatalf("nats-server not installed (scripts/test.sh installs it): %v", err)
		}
	}
	n.cmd = exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port))
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	testwait.For(n.t, 10*time.Second, "private nats-server listening", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(n.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (n *privateNATS) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	_ = n.cmd.Wait()
	n.cmd = nil
}

// TestClusterNATSRestart kills the NATS server while clients write
// through one node and observers read through another: once NATS is back,
// the other node catches up from the store's log, and no change is lost
// or stored twice.
func TestClusterNATSRestart(t *testing.T) {
	t.Parallel()
	ns := startPrivateNATS(t)
	// Compacting often, node 0 deletes log rows node 1 has not read while
	// NATS is down: node 1 catches up from the snapshot.
	c := startCluster(t, 2, ns.url(), "--compact-changes", "50")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := make([]*crashWriter, 3)
	observed := make([]*automerge.Doc, len(writers))
	var wg sync.WaitGroup
	var obsMu sync.Mutex
	for i := range writers {
		w := newCrashWriter(i)
		writers[i] = w
		wg.Go(func() { w.run(ctx, func() string { return c.url(0) }) })
		doc := automerge.New()
		observed[i] = doc
		wg.Go(func() {
			p, err := wstest.Dial(ctx, c.url(1), wire.PeerID(fmt.Sprint("peer-observer-", i)), w.docID, doc)
			if err != nil {
				return
			}
			defer p.Close()
			_ = p.SendSync(ctx, wire.TypeRequest)
			_ = syncLocked(ctx, p, &obsMu)
		})
	}
	for range 2 {
		time.Sleep(500 * time.Millisecond)
		ns.kill()
		time.Sleep(700 * time.Millisecond) // node 0 stores and acknowledges; node 1 hears nothing
		ns.start()
	}
	time.Sleep(500 * time.Millisecond)

	// The observers, live on node 1 all along, receive every acknowledged
	// change.
	testwait.For(t, 10*time.Second, "observers on node 1 caught up", func() bool {
		obsMu.Lock()
		defer obsMu.Unlock()
		for i, w := range writers {
			if observed[i].RootMap().Len() < int(w.acked.Load())+1 {
				return false
			}
		}
		return true
	})
	cancel()
	wg.Wait()

	// Node 1's rooms stayed in memory through the outages: what they
	// serve must have caught up.
	total := verifyOnEveryNode(t, c, writers)
	t.Logf("2 NATS restarts, %d acknowledged changes checked through each node", total)
	if total < 10*len(writers) {
		t.Fatalf("only %d changes acknowledged: the test exercised too little\n%s", total, c.logs())
	}

	// Nothing stored twice: each document's log holds each change once,
	// and its last position counts its changes.
	vctx, vcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer vcancel()
	conn, err := pgx.Connect(vctx, c.db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, w := range writers {
		doc, err := fetch(vctx, c.url(1), w.docID)
		if err != nil {
			t.Fatal(err)
		}
		changes, err := doc.Changes()
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		if err := conn.QueryRow(vctx, `SELECT last_seq FROM docs WHERE doc_id = $1`, string(w.docID)).Scan(&last); err != nil {
			t.Fatal(err)
		}
		if last != int64(len(changes)) {
			t.Errorf("%s: the log's last position is %d for a document of %d changes", w.id, last, len(changes))
		}
	}
}

// syncLocked syncs a client until ctx ends, holding mu while it touches
// the client's document (others read it under mu).
func syncLocked(ctx context.Context, p *wstest.Peer, mu *sync.Mutex) error {
	for ctx.Err() == nil {
		mu.Lock()
		err := p.SendSync(ctx, wire.TypeSync)
		mu.Unlock()
		if err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		m, err := p.Read(rctx)
		cancel()
		if err != nil && rctx.Err() != nil {
			continue
		}
		if err != nil {
			return err
		}
		mu.Lock()
		_, err = p.Apply(m)
		mu.Unlock()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// TestClusterJoinMidStream starts a node while clients write through the
// others: it serves the current state at once.
func TestClusterJoinMidStream(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 2, testNATSURL(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := make([]*crashWriter, 2)
	var wg sync.WaitGroup
	for i := range writers {
		w := newCrashWriter(i)
		writers[i] = w
		wg.Go(func() { w.run(ctx, func() string { return c.url(i) }) })
	}
	defer func() { cancel(); wg.Wait() }()
	testwait.For(t, 20*time.Second, "writers under way", func() bool {
		return writers[0].acked.Load() >= 20 && writers[1].acked.Load() >= 20
	})
	joined := c.add()
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	for _, w := range writers {
		acked := int(w.acked.Load())
		if acked < 5 {
			t.Fatalf("%s: only %d changes acknowledged before the join\n%s", w.id, acked+1, c.logs())
		}
		keys := make([]string, acked+1)
		for i := range keys {
			keys[i] = fmt.Sprint("k", i)
		}
		// The writers go on, so the document is never quiet: sync until
		// it holds what was acknowledged before the join.
		p, err := wstest.Dial(fctx, joined.url(), wire.PeerID("peer-joined-"+string(w.id)), w.docID, automerge.New())
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.SendSync(fctx, wire.TypeRequest); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sctx, scancel := context.WithTimeout(fctx, 5*time.Second)
		err = syncUntil(sctx, p, func(m wire.Message, _ []automerge.ChangeHash) bool {
			return m.Type == wire.TypeDocUnavailable || hasKeys(p.Doc, keys)
		})
		scancel()
		if err != nil || !hasKeys(p.Doc, keys) {
			t.Fatalf("%s: the new node did not serve the %d changes acknowledged before it joined: %v\n%s", w.id, acked+1, err, c.logs())
		}
		t.Logf("%s: the new node served %d acknowledged changes in %v", w.id, acked+1, time.Since(start).Round(time.Millisecond))
	}
	// Writers carry on through the new node too.
	before := writers[0].acked.Load()
	p, err := wstest.Dial(fctx, joined.url(), "peer-late", writers[0].docID, automerge.New())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_ = p.SendSync(fctx, wire.TypeRequest)
	err = syncUntil(fctx, p, func(wire.Message, []automerge.ChangeHash) bool {
		v, err := p.Doc.RootMap().Get(fmt.Sprint("k", before+3))
		return err == nil && v.Kind() == automerge.KindInt64
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("a client of the new node does not receive live changes made through node 0: %v\n%s", err, c.logs())
	}
}

// TestClusterWebhooksOnce runs a webhook sender on each of two nodes:
// every event is delivered once, by one of them.
func TestClusterWebhooksOnce(t *testing.T) {
	t.Parallel()
	// A slow receiver: without claims, both senders would take each event
	// while the other's delivery is under way.
	rc := &receiver{t: t, secret: []byte("webhook-test-secret"), seen: map[int64]map[string]any{}, tries: map[int64]int{},
		delay: 300 * time.Millisecond}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	c := startCluster(t, 2, testNATSURL(t), "--webhook-urls", hook.URL,
		"--webhook-secret", string(rc.secret), "--webhook-debounce", "50ms")
	var docs []string
	for i := range 6 {
		s := c.node(i)
		created := restCall(t, s, "POST", "/api/v1/docs", fmt.Sprintf(`{"n": %d}`, i))
		id := created["id"].(string)
		docs = append(docs, id)
		restCall(t, c.node(i+1), "POST", "/api/v1/docs/"+id+"/changes", `{"ops":[{"op":"set","path":["edited"],"value":true}]}`)
	}
	testwait.For(t, 20*time.Second, "every event delivered", func() bool {
		for _, id := range docs {
			if rc.count(id, "document.created") < 1 || rc.count(id, "document.changed") < 1 {
				return false
			}
		}
		return true
	})
	time.Sleep(1500 * time.Millisecond) // time for a second sender to send anything again
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id, n := range rc.tries {
		if n != 1 {
			t.Errorf("event %d delivered %d times, want once", id, n)
		}
	}
	if rc.bad != 0 {
		t.Errorf("%d requests had bad signatures", rc.bad)
	}
}
