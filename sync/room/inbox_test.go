package room

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/sync/wire"
)

func env(i int) envelope {
	return envelope{kind: kindSync, msg: wire.Message{Type: wire.TypeSync, Count: uint64(i)}}
}

func TestInboxOrderAndSignal(t *testing.T) {
	b := newInbox(4)
	ctx := context.Background()
	for i := range 3 {
		if err := b.put(ctx, nil, env(i)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-b.ready:
	default:
		t.Fatal("no ready signal after put")
	}
	got := b.take(nil, 2)
	if len(got) != 2 || got[0].msg.Count != 0 || got[1].msg.Count != 1 {
		t.Fatalf("took %+v", got)
	}
	select {
	case <-b.ready: // one is left: the signal is given again
	default:
		t.Fatal("no ready signal with an envelope left")
	}
	got = b.take(got[:0], 10)
	if len(got) != 1 || got[0].msg.Count != 2 || b.len() != 0 {
		t.Fatalf("took %+v, %d left", got, b.len())
	}
	if got := b.take(nil, 10); len(got) != 0 {
		t.Fatalf("an empty inbox gave %d", len(got))
	}
}

func TestInboxFullWaits(t *testing.T) {
	b := newInbox(2)
	ctx := context.Background()
	_ = b.put(ctx, nil, env(0))
	_ = b.put(ctx, nil, env(1))
	put := make(chan error, 1)
	go func() { put <- b.put(ctx, nil, env(2)) }()
	select {
	case err := <-put:
		t.Fatalf("put into a full inbox returned %v at once", err)
	case <-time.After(50 * time.Millisecond):
	}
	b.take(nil, 1)
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	if got := b.take(nil, 10); len(got) != 2 || got[1].msg.Count != 2 {
		t.Fatalf("took %+v", got)
	}

	// A waiting put ends with the room, or with its context.
	_ = b.put(ctx, nil, env(0))
	_ = b.put(ctx, nil, env(1))
	done := make(chan struct{})
	go func() { put <- b.put(ctx, done, env(2)) }()
	close(done)
	if err := <-put; !errors.Is(err, ErrClosed) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { put <- b.put(cctx, nil, env(2)) }()
	cancel()
	if err := <-put; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestInboxLetsGoOfItsBuffer(t *testing.T) {
	b := newInbox(256)
	ctx := context.Background()
	for i := range 200 {
		_ = b.put(ctx, nil, env(i))
	}
	var batch []envelope
	for b.len() > 0 {
		batch = b.take(batch[:0], 64)
	}
	if cap(b.q) > keepCap {
		t.Fatalf("a drained inbox keeps a buffer of %d", cap(b.q))
	}
	if newInbox(256).q != nil {
		t.Fatal("a new inbox allocates a buffer")
	}
}
