package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// appendAll appends one change to each of n new documents from n
// goroutines released at the same moment, and returns the documents and
// their changes.
func appendAll(t *testing.T, s *Store, n int) ([]wire.DocID, []core.Change) {
	t.Helper()
	ids := make([]wire.DocID, n)
	changes := storetest.NewChanges(n, 100)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = wire.NewDocID()
		wg.Go(func() {
			<-start
			if seq, err := s.Append(context.Background(), ids[i], changes[i:i+1]); err != nil || seq != 1 {
				t.Errorf("Append #%d = %d, %v; want 1, nil", i, seq, err)
			}
		})
	}
	close(start)
	wg.Wait()
	return ids, changes
}

func TestPostgresGroupCommit(t *testing.T) {
	t.Parallel()
	s := openTest(t, newTestDatabase(t))
	defer s.Close()
	const n = 50
	ids, changes := appendAll(t, s, n)
	st := s.Stats()
	t.Logf("%d Appends in %d transactions", st.Appends, st.Transactions)
	if st.Appends != n || st.Changes != n {
		t.Errorf("stats count %d Appends, %d changes; want %d each", st.Appends, st.Changes, n)
	}
	if st.Transactions >= n {
		t.Errorf("%d concurrent Appends took %d transactions: no group commit", n, st.Transactions)
	}
	for i, id := range ids {
		doc, err := s.Load(context.Background(), id)
		if err != nil || len(doc.Changes) != 1 || string(doc.Changes[0]) != string(changes[i].Data) {
			t.Errorf("doc %d: Load = %d changes, %v", i, len(doc.Changes), err)
		}
	}
}

// TestPostgresBatchFailure checks that a document the server rejects fails
// only its own Append, not the others in its transaction, and that a failed
// transaction leaves nothing behind.
func TestPostgresBatchFailure(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url, WithCommitWindow(200*time.Millisecond))
	defer s.Close()
	// The server rejects one document's changes (in the transaction's
	// second statement), and another document's ID (text cannot hold NUL:
	// in the first statement).
	const rejected = wire.DocID("rejected")
	if _, err := testConn(t, url).Exec(context.Background(),
		`ALTER TABLE changes ADD CONSTRAINT test_reject CHECK (doc_id <> '`+string(rejected)+`')`); err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := make([]wire.DocID, n)
	errs := make([]error, n)
	bad := map[int]bool{5: true, 12: true}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = wire.NewDocID()
		switch i {
		case 5:
			ids[i] = "bad\x00id"
		case 12:
			ids[i] = rejected
		}
		wg.Go(func() {
			<-start
			_, errs[i] = s.Append(context.Background(), ids[i], storetest.NewChanges(2, 50))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if bad[i] != (err != nil) {
			t.Errorf("Append #%d (bad: %v): %v", i, bad[i], err)
		}
		if i == 5 {
			continue // not even a valid key to look up
		}
		doc, err := s.Load(context.Background(), ids[i])
		switch {
		case bad[i] && !errors.Is(err, room.ErrNotFound):
			t.Errorf("doc %d: Load after a failed Append = %d changes, %v; want room.ErrNotFound", i, len(doc.Changes), err)
		case !bad[i] && (err != nil || len(doc.Changes) != 2):
			t.Errorf("doc %d: Load = %d changes, %v", i, len(doc.Changes), err)
		}
	}
	if _, err := s.Stat(context.Background(), rejected); !errors.Is(err, room.ErrNotFound) {
		t.Errorf("the rejected document's row outlived its failed transaction: Stat = %v", err)
	}
	if st := s.Stats(); st.Retried == 0 || st.Appends != n-2 {
		t.Errorf("stats %+v: want the batch retried one by one and %d Appends committed", st, n-2)
	}
}

// TestPostgresSameDocumentInBatch appends to one document from several
// goroutines at once (rooms do not, but the store copes): the Appends that
// find their document in the batch already wait for the next one.
func TestPostgresSameDocumentInBatch(t *testing.T) {
	t.Parallel()
	s := openTest(t, newTestDatabase(t), WithCommitWindow(50*time.Millisecond))
	defer s.Close()
	id := wire.NewDocID()
	const n = 10
	changes := storetest.NewChanges(n, 30)
	seqs := make([]int64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var err error
			if seqs[i], err = s.Append(context.Background(), id, changes[i:i+1]); err != nil {
				t.Errorf("Append #%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	seen := make(map[int64]bool)
	for _, seq := range seqs {
		if seq < 1 || seq > n || seen[seq] {
			t.Errorf("seqs %v are not 1..%d", seqs, n)
			break
		}
		seen[seq] = true
	}
	doc, err := s.Load(context.Background(), id)
	if err != nil || len(doc.Changes) != n || doc.LastSeq != n {
		t.Errorf("Load = %d changes, LastSeq %d, %v; want %d", len(doc.Changes), doc.LastSeq, err, n)
	}
}

// TestPostgresCloseDuringAppends closes the store while Appends wait in a
// batch: the writer commits what it has taken, the rest fail with
// docstore.ErrClosed, nothing hangs, and every Append that succeeded is stored.
func TestPostgresCloseDuringAppends(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url, WithCommitWindow(300*time.Millisecond))
	const n = 30
	ids := make([]wire.DocID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ids {
		ids[i] = wire.NewDocID()
		wg.Go(func() {
			if i >= n/2 {
				time.Sleep(50 * time.Millisecond)
			}
			_, errs[i] = s.Append(context.Background(), ids[i], storetest.NewChanges(1, 10))
		})
	}
	time.Sleep(100 * time.Millisecond) // the first ones are in the batch, gathering
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openTest(t, url)
	defer s.Close()
	var stored int
	for i, err := range errs {
		_, lerr := s.Load(context.Background(), ids[i])
		switch {
		case err == nil && lerr != nil:
			t.Errorf("Append #%d succeeded, but Load after Close: %v", i, lerr)
		case err != nil && !errors.Is(err, docstore.ErrClosed):
			t.Errorf("Append #%d during Close: %v, want success or docstore.ErrClosed", i, err)
		case err == nil:
			stored++
		}
	}
	if stored == 0 {
		t.Error("Close dropped the batch it was gathering")
	}
}

// terminateBackends ends every other session connected to url's database,
// as a server restart or failover would.
func terminateBackends(t *testing.T, url string) int {
	t.Helper()
	var n int
	err := testConn(t, url).QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPostgresBackendTermination(t *testing.T) {
	t.Parallel()
	for _, gc := range []bool{true, false} {
		url := newTestDatabase(t)
		s := openTest(t, url, WithGroupCommit(gc))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		id := wire.NewDocID()
		if _, err := s.Append(ctx, id, storetest.NewChanges(1, 10)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, id); err != nil { // a second pooled connection
			t.Fatal(err)
		}
		if n := terminateBackends(t, url); n == 0 {
			t.Fatal("no backend to terminate")
		}
		if seq, err := s.Append(ctx, id, storetest.NewChanges(1, 10)); err != nil || seq != 2 {
			t.Errorf("group commit %v: Append after the backends were terminated = %d, %v; want 2", gc, seq, err)
		}
		terminateBackends(t, url)
		if doc, err := s.Load(ctx, id); err != nil || len(doc.Changes) != 2 {
			t.Errorf("group commit %v: Load after the backends were terminated = %d changes, %v", gc, len(doc.Changes), err)
		}
		cancel()
		s.Close()
	}
}

// TestPostgresTerminationUnderLoad terminates the store's backends again
// and again while rooms append: rooms retry failed Appends, as they do, and
// in the end every change is logged once, with gapless seqs, even those
// whose commit outcome their Append could not know.
func TestPostgresTerminationUnderLoad(t *testing.T) {
	t.Parallel()
	url := newTestDatabase(t)
	s := openTest(t, url)
	defer s.Close()
	const rooms, perRoom = 20, 100
	ids := make([]wire.DocID, rooms)
	changes := make([][]core.Change, rooms)
	var failures, terminated atomic.Int64
	stop := make(chan struct{})
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				terminated.Add(int64(terminateBackends(t, url)))
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range ids {
		ids[i], changes[i] = wire.NewDocID(), storetest.NewChanges(perRoom, 100)
		wg.Go(func() {
			for j := range perRoom {
				for attempt := 0; ; attempt++ {
					_, err := s.Append(context.Background(), ids[i], changes[i][j:j+1])
					if err == nil {
						break
					}
					failures.Add(1)
					if attempt == 50 {
						t.Errorf("room %d: Append keeps failing: %v", i, err)
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	<-killerDone
	t.Logf("%d backends terminated; %d failed Appends retried by their rooms; stats %+v",
		terminated.Load(), failures.Load(), s.Stats())
	if terminated.Load() < 5 {
		t.Errorf("only %d backends terminated while the rooms appended", terminated.Load())
	}
	for i, id := range ids {
		doc, err := s.Load(context.Background(), id)
		if err != nil {
			t.Fatalf("room %d: Load: %v", i, err)
		}
		if len(doc.Changes) != perRoom || doc.LastSeq != perRoom {
			t.Errorf("room %d: %d changes, LastSeq %d; want %d", i, len(doc.Changes), doc.LastSeq, perRoom)
		}
		if st, err := s.Stat(context.Background(), id); err != nil || st.Changes != perRoom || st.Size != perRoom*100 {
			t.Errorf("room %d: Stat = %+v, %v", i, st, err)
		}
	}
}

// pgProxy is a TCP proxy in front of the test server that the test can
// take down (connections refused), turn into a black hole (connections
// accepted, nothing answered) or bring back.
type pgProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{addr: ln.Addr().String(), target: target, conns: make(map[net.Conn]bool)}
	p.serve(ln, true)
	t.Cleanup(p.down)
	return p
}

func (p *pgProxy) serve(ln net.Listener, forward bool) {
	p.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns[c] = true
			p.mu.Unlock()
			if !forward {
				continue // hold it, answer nothing
			}
			go func() {
				up, err := net.Dial("tcp", p.target)
				if err != nil {
					c.Close()
					return
				}
				p.mu.Lock()
				p.conns[up] = true
				p.mu.Unlock()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
				c.Close()
			}()
		}
	}()
}

// down closes the listener and every connection.
func (p *pgProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// up listens again on the same address, forwarding or not.
func (p *pgProxy) up(t *testing.T, forward bool) {
	p.down()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serve(ln, forward)
}

// TestPostgresUnreachable takes the server away behind a proxy: calls fail
// within their context instead of hanging, and work again once it is back.
func TestPostgresUnreachable(t *testing.T) {
	t.Parallel()
	dbURL := newTestDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" {
		t.Fatalf("TANDEM_TEST_DATABASE_URL must be a postgres:// URL with a host for this test: %v", err)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.addr
	s := openTest(t, withParam(u.String(), "connect_timeout", "2"))
	defer s.Close()
	id := wire.NewDocID()
	if _, err := s.Append(context.Background(), id, storetest.NewChanges(1, 10)); err != nil {
		t.Fatal(err)
	}

	within := func(what string, timeout time.Duration, call func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		err := call(ctx)
		if err == nil {
			t.Errorf("%s succeeded without a server", what)
		}
		d := time.Since(start)
		if d > timeout+time.Second {
			t.Errorf("%s returned after %v, long after its %v deadline: %v", what, d, timeout, err)
		}
		t.Logf("%s failed after %v: %v", what, d.Round(time.Millisecond), err)
	}
	appendCall := func(ctx context.Context) error {
		_, err := s.Append(ctx, id, storetest.NewChanges(1, 10))
		return err
	}
	loadCall := func(ctx context.Context) error { _, err := s.Load(ctx, id); return err }

	proxy.down() // connections refused
	within("Append (refused)", 5*time.Second, appendCall)
	within("Load (refused)", 5*time.Second, loadCall)
	proxy.up(t, false) // black hole
	within("Append (black hole)", 500*time.Millisecond, appendCall)
	within("Load (black hole)", 500*time.Millisecond, loadCall)

	proxy.up(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	seq, err := s.Append(ctx, id, storetest.NewChanges(1, 10))
	for err != nil && ctx.Err() == nil { // a room would retry the same way
		time.Sleep(50 * time.Millisecond)
		seq, err = s.Append(ctx, id, storetest.NewChanges(1, 10))
	}
	if err != nil || seq < 2 {
		t.Fatalf("Append once the server is back = %d, %v", seq, err)
	}
	if doc, err := s.Load(ctx, id); err != nil || int64(len(doc.Changes)) != doc.LastSeq {
		t.Errorf("Load once the server is back = %d changes, LastSeq %d, %v", len(doc.Changes), doc.LastSeq, err)
	}
}

// BenchmarkPostgresAppend appends ~100-byte changes, one per Append, from
// 100 rooms at once, each to its own document, with group commit (without
// and with the webhook outbox, whose 1 s debounce makes every busy document
// write one 'changed' event a second) and with a transaction per change.
func BenchmarkPostgresAppend(b *testing.B) {
	url := newTestDatabase(b)
	for _, bc := range []struct {
		name string
		opts []Option
	}{
		{"group-commit", nil},
		{"group-commit-outbox", []Option{WithOutbox(time.Second)}},
		{"tx-per-change", []Option{WithGroupCommit(false)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTest(b, url, bc.opts...)
			defer s.Close()
			const rooms = 100
			var next atomic.Int64
			var wg sync.WaitGroup
			b.SetBytes(100)
			b.ResetTimer()
			for range rooms {
				wg.Go(func() {
					id := wire.NewDocID()
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Append(context.Background(), id, storetest.NewChanges(1, 100)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
			if st := s.Stats(); st.Transactions > 0 {
				b.ReportMetric(float64(st.Appends)/float64(st.Transactions), "changes/tx")
			}
		})
	}
}
