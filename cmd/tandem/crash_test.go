package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/internal/wstest"
	"github.com/tandem-sync/tandem/sync/wire"
)

// crashWriter edits its own document over and over through the server and
// records which of its changes the server has advertised back (the server's
// heads include the change): those must survive any crash.
type crashWriter struct {
	id       wire.PeerID
	docID    wire.DocID
	doc      *automerge.Doc
	acked    atomic.Int64 // highest change index advertised back, -1 for none
	sessions atomic.Int64 // connections made

	mu     sync.Mutex
	hashes []automerge.ChangeHash // hashes[i] is change i, which sets key k<i>
}

func (w *crashWriter) hashesSnapshot() []automerge.ChangeHash {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]automerge.ChangeHash(nil), w.hashes...)
}

func newCrashWriter(n int) *crashWriter {
	w := &crashWriter{id: wire.PeerID(fmt.Sprintf("peer-writer-%d", n)), docID: wire.NewDocID(), doc: automerge.New()}
	w.acked.Store(-1)
	return w
}

// run keeps writing until ctx ends, reconnecting whenever the server dies.
func (w *crashWriter) run(ctx context.Context, url func() string) {
	for ctx.Err() == nil {
		p, err := wstest.Dial(ctx, url(), w.id, w.docID, w.doc)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		w.sessions.Add(1)
		w.session(ctx, p)
		p.Close()
	}
}

func (w *crashWriter) session(ctx context.Context, p *wstest.Peer) {
	if p.SendSync(ctx, wire.TypeSync) != nil {
		return
	}
	for ctx.Err() == nil {
		// Keep a few changes in flight.
		if len(w.hashes)-1-int(w.acked.Load()) < 4 {
			i := len(w.hashes)
			if err := w.doc.RootMap().Set(fmt.Sprint("k", i), int64(i)); err != nil {
				panic(err)
			}
			h, err := w.doc.Commit(fmt.Sprint("change ", i))
			if err != nil {
				panic(err)
			}
			w.mu.Lock()
			w.hashes = append(w.hashes, h)
			w.mu.Unlock()
			if p.SendSync(ctx, wire.TypeSync) != nil {
				return
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, heads, err := p.Receive(rctx)
		cancel()
		if err != nil {
			if rctx.Err() != nil && ctx.Err() == nil {
				continue // nothing yet
			}
			return // connection gone: the server died
		}
		for j := len(w.hashes) - 1; j > int(w.acked.Load()); j-- {
			if containsHash(heads, w.hashes[j]) {
				w.acked.Store(int64(j))
				break
			}
		}
		if p.SendSync(ctx, wire.TypeSync) != nil {
			return
		}
	}
}

// verify fetches the document with a fresh client and checks that every
// advertised change is in it.
func (w *crashWriter) verify(ctx context.Context, url string) error {
	acked := int(w.acked.Load())
	if acked < 0 {
		return nil
	}
	doc, err := fetch(ctx, url, w.docID)
	if err != nil {
		return fmt.Errorf("%s: fetch %s: %w", w.id, w.docID, err)
	}
	for i := 0; i <= acked; i++ {
		v, err := doc.Path(fmt.Sprint("k", i)).Get()
		if err != nil || v.Kind() != automerge.KindInt64 || v.Int64() != int64(i) {
			return fmt.Errorf("%s: change %d of %d advertised changes is lost (got %v, %v)", w.id, i, acked+1, v, err)
		}
	}
	return nil
}

// startWriters starts n writers on their own documents; they stop when
// ctx ends, and the WaitGroup is done then.
func startWriters(ctx context.Context, n int, url func() string) ([]*crashWriter, *sync.WaitGroup) {
	writers := make([]*crashWriter, n)
	var wg sync.WaitGroup
	for i := range writers {
		writers[i] = newCrashWriter(i)
		wg.Go(func() { writers[i].run(ctx, url) })
	}
	return writers, &wg
}

// crashTest runs writers against the binary, kills it with SIGKILL at random
// moments, restarts it, and checks that no advertised change was lost.
func crashTest(t *testing.T, cycles int, env []string, args ...string) {
	s := startServer(t, env, args...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	url := func() string {
		mu.Lock()
		defer mu.Unlock()
		return s.url()
	}
	writers, wg := startWriters(ctx, 4, url)
	for range cycles {
		time.Sleep(time.Duration(150+rand.IntN(450)) * time.Millisecond)
		mu.Lock()
		s.kill()
		s.restart()
		mu.Unlock()
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()

	// One more crash before checking, so that the last acknowledgements
	// too are checked against what survives a SIGKILL.
	s.kill()
	s.restart()
	vctx, vcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer vcancel()
	total, failed := 0, 0
	for _, w := range writers {
		if err := w.verify(vctx, s.url()); err != nil {
			t.Error(err)
			failed++
		}
		total += int(w.acked.Load()) + 1
	}
	t.Logf("%d kill cycles, %d writers, %d advertised changes checked, %d writers lost changes", cycles+1, len(writers), total, failed)
	if total < 10*len(writers) {
		t.Fatalf("only %d changes were advertised: the test exercised too little\n%s", total, s.logs())
	}
}

func TestCrashDurabilitySQLite(t *testing.T) {
	t.Parallel()
	crashTest(t, 10, nil, "--data-dir", t.TempDir())
}

func TestCrashDurabilityPostgres(t *testing.T) {
	t.Parallel()
	crashTest(t, 10, nil, "--database-url", storetest.NewPostgresDatabase(t))
}
