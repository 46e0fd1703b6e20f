package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/wire"
)

// TestSQLiteGroupCommit checks that writes batched into one transaction
// succeed or fail one by one.
func TestSQLiteGroupCommit(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()

	// Hold the writer so that the writes below queue up and are taken as
	// one batch.
	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = s.write(ctx, func(context.Context, *sql.Tx) error { close(held); <-release; return nil })
	}()
	<-held
	const n = 30
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES (?, 'x')`, fmt.Sprint("k", i)); err != nil {
					return err
				}
				if i%3 == 0 {
					return fmt.Errorf("op %d fails", i)
				}
				return nil
			})
		})
	}
	time.Sleep(100 * time.Millisecond) // let them all queue
	close(release)
	wg.Wait()
	for i, err := range errs {
		var count int
		if err := s.db.QueryRow(`SELECT count(*) FROM meta WHERE key = ?`, fmt.Sprint("k", i)).Scan(&count); err != nil {
			t.Fatal(err)
		}
		if fails := i%3 == 0; fails != (err != nil) || fails != (count == 0) {
			t.Errorf("op %d: error %v, row stored: %v", i, err, count == 1)
		}
	}
}

func TestSQLiteClosed(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	id := wire.NewDocID()
	if _, err := s.Append(ctx, id, storetest.NewChanges(1, 1)); !errors.Is(err, docstore.ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	if _, err := s.Append(ctx, id, nil); !errors.Is(err, docstore.ErrClosed) {
		t.Errorf("empty Append after Close: %v", err)
	}
	if _, err := s.Load(ctx, id); !errors.Is(err, docstore.ErrClosed) {
		t.Errorf("Load after Close: %v", err)
	}
	if _, err := s.Stat(ctx, id); !errors.Is(err, docstore.ErrClosed) {
		t.Errorf("Stat after Close: %v", err)
	}
	if err := s.Delete(ctx, id); !errors.Is(err, docstore.ErrClosed) {
		t.Errorf("Delete after Close: %v", err)
	}
}

// TestSQLiteSurvivesKill appends from a child process, which reports each
// Append that returned, and kills it with SIGKILL: every reported change
// must be there when the parent reopens the store.
func TestSQLiteSurvivesKill(t *testing.T) {
	if dir := os.Getenv("TANDEM_KILL_TEST_DIR"); dir != "" {
		killTestChild(dir, wire.DocID(os.Getenv("TANDEM_KILL_TEST_DOC")))
		return
	}
	if testing.Short() {
		t.Skip("short")
	}
	dir, id := t.TempDir(), wire.NewDocID()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteSurvivesKill$")
	cmd.Env = append(os.Environ(), "TANDEM_KILL_TEST_DIR="+dir, "TANDEM_KILL_TEST_DOC="+string(id))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked int64
	for sc.Scan() && acked < 50 {
		if v, err := strconv.ParseInt(sc.Text(), 10, 64); err == nil {
			acked = v
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if acked < 50 {
		t.Fatalf("child acknowledged only %d appends", acked)
	}
	s := openTest(t, dir)
	defer s.Close()
	doc, err := s.Load(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if doc.LastSeq < acked || int64(len(doc.Changes)) != doc.LastSeq {
		t.Errorf("after SIGKILL: %d changes, LastSeq %d; %d were acknowledged", len(doc.Changes), doc.LastSeq, acked)
	}
}

func killTestChild(dir string, id wire.DocID) {
	s, err := Open(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		seq, err := s.Append(context.Background(), id, storetest.NewChanges(1, 100))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(seq)
	}
}

func BenchmarkSQLiteAppend(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	ctx, id := context.Background(), wire.NewDocID()
	changes := storetest.NewChanges(b.N, 100)
	b.SetBytes(100)
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Append(ctx, id, changes[i:i+1]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSQLiteAppendParallel appends from many goroutines (rooms) at
// once, each to its own document, where group commit shares the fsyncs.
func BenchmarkSQLiteAppendParallel(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	b.SetBytes(100)
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		id := wire.NewDocID()
		for pb.Next() {
			if _, err := s.Append(context.Background(), id, storetest.NewChanges(1, 100)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
