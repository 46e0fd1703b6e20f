package loadgen_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/internal/loadgen"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// TestRunDeliversEveryEdit runs a small load against an in-process Tandem:
// every edit reaches every other client of its document, nothing fails,
// and the report adds up.
func TestRunDeliversEveryEdit(t *testing.T) {
	srv := startServer(t, room.Config{})
	var progress int
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.url, Docs: 3, ClientsPerDoc: 3, Rate: 200, Duration: 1500 * time.Millisecond, Warmup: 300 * time.Millisecond,
		ServerPIDs: []int{os.Getpid()},
		Progress:   func(loadgen.Progress) { progress++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Edits < 200 || res.EditRate < 100 {
		t.Errorf("edits = %d (%.0f/s), want about 300 at 200/s", res.Edits, res.EditRate)
	}
	if res.Expected != 2*res.Edits || res.Delivered != res.Expected || res.Lost != 0 {
		t.Errorf("expected %d deliveries (2 per edit of %d), delivered %d, lost %d", res.Expected, res.Edits, res.Delivered, res.Lost)
	}
	if res.FanOut.Samples != uint64(res.Delivered) || res.FanOut.P50 <= 0 || res.FanOut.P99 < res.FanOut.P50 || res.FanOut.Max < res.FanOut.P99 {
		t.Errorf("fan-out %+v does not fit %d deliveries", res.FanOut, res.Delivered)
	}
	if res.Errors != 0 || len(res.Disconnects) != 0 {
		t.Errorf("errors %d %q, disconnects %v; want none", res.Errors, res.ErrorSamples, res.Disconnects)
	}
	if res.BytesIn == 0 || res.BytesOut == 0 || res.MessagesIn < res.Delivered/2 {
		t.Errorf("bytes in %d out %d, messages in %d", res.BytesIn, res.BytesOut, res.MessagesIn)
	}
	if res.Server == nil || res.Server.RSSEnd == 0 || res.Server.CPUSeconds <= 0 || res.Self.CPUSeconds <= 0 {
		t.Errorf("usage: server %+v, self %+v", res.Server, res.Self)
	}
	if progress == 0 {
		t.Error("no progress reported")
	}
}

// TestIdleWithDocuments opens idle connections that each create a
// document: the server holds a room per document while they stay, and
// after they close it evicts them within its idle timeout.
func TestIdleWithDocuments(t *testing.T) {
	srv := startServer(t, room.Config{IdleTimeout: 300 * time.Millisecond})
	res, err := loadgen.Idle(context.Background(), loadgen.IdleConfig{
		URL: srv.url, Connections: 30, Docs: true, ServerPIDs: []int{os.Getpid()},
		Settle: 100 * time.Millisecond, Release: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connections != 30 || res.RSSBefore == 0 || res.RSSAfter == 0 || res.Errors != 0 || len(res.Disconnects) != 0 {
		t.Fatalf("%+v", res)
	}
	if want := float64(res.RSSAfter-res.RSSBefore) / 30; res.PerConnection != want {
		t.Errorf("per connection %.0f, want %.0f", res.PerConnection, want)
	}
	if res.Release == nil || res.Release.RSSEnd == 0 || res.Release.WaitS < 1.9 {
		t.Fatalf("release %+v", res.Release)
	}
	if n := srv.rooms.Len(); n != 0 {
		t.Errorf("%d rooms still in memory after the release", n)
	}
}

// TestIdleWithoutDocuments only opens connections: no room is created.
func TestIdleWithoutDocuments(t *testing.T) {
	srv := startServer(t, room.Config{})
	res, err := loadgen.Idle(context.Background(), loadgen.IdleConfig{
		URL: srv.url, Connections: 10, ServerPIDs: []int{os.Getpid()}, Settle: 50 * time.Millisecond,
	})
	rooms := srv.rooms.Len()
	if err != nil {
		t.Fatal(err)
	}
	if res.Release != nil || res.Errors != 0 || rooms != 0 {
		t.Fatalf("%+v, %d rooms", res, rooms)
	}
}

// TestRunCountsDisconnects shuts the server's hub down during a run: every
// connection is closed with 1001, and the report counts them by that code
// (the lost deliveries and errors that follow are counted, not fatal).
func TestRunCountsDisconnects(t *testing.T) {
	srv := startServer(t, room.Config{})
	go func() {
		time.Sleep(700 * time.Millisecond)
		srv.hub.Close()
	}()
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.url, Docs: 2, ClientsPerDoc: 2, Rate: 50, Duration: 1500 * time.Millisecond, Drain: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Disconnects["1001"] != 4 {
		t.Errorf("disconnects %v, want 4 × 1001", res.Disconnects)
	}
	if res.EditsSkipped == 0 {
		t.Errorf("no edit was skipped after the connections ended: %+v", res)
	}
}

// TestRunSetupFails reports a server that is not there as an error.
func TestRunSetupFails(t *testing.T) {
	_, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: "ws://127.0.0.1:1/", Docs: 1, ClientsPerDoc: 2, Rate: 1, Duration: time.Second, SetupTimeout: time.Second,
	})
	if err == nil {
		t.Fatal("a run against no server succeeded")
	}
}

// mute is a server that completes the handshake and then never answers:
// documents created on it are never acknowledged. A deaf one does not
// even answer join.
func mute(t *testing.T) string { return silent(t, true) }

func deaf(t *testing.T) string { return silent(t, false) }

func silent(t *testing.T, handshake bool) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			_, frame, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if m, err := wire.Decode(frame); err == nil && m.Type == wire.TypeJoin && handshake {
				b, _ := wire.Encode(wire.Message{Type: wire.TypePeer, SenderID: "mute", TargetID: m.SenderID, SelectedProtocolVersion: "1"})
				if err := c.Write(r.Context(), websocket.MessageBinary, b); err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/"
}

// TestIdleMeasuresWhatOpened: when the server does not take every
// document within the setup timeout, the measurement goes on with the
// connections that opened and says so.
func TestIdleMeasuresWhatOpened(t *testing.T) {
	res, err := loadgen.Idle(context.Background(), loadgen.IdleConfig{
		URL: mute(t), Connections: 5, Docs: true, ServerPIDs: []int{os.Getpid()},
		Settle: 10 * time.Millisecond, SetupTimeout: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Opened != 5 || res.Ready != 0 || !strings.Contains(res.SetupError, "5 of 5 connections open and 0 ready") {
		t.Fatalf("%+v", res)
	}
}

// TestRunSetupTimesOut: a load run whose documents never sync fails.
func TestRunSetupTimesOut(t *testing.T) {
	_, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: mute(t), Docs: 1, ClientsPerDoc: 2, Rate: 1, Duration: time.Second, SetupTimeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "create documents") {
		t.Fatalf("err = %v", err)
	}
}

// TestIdleHandshakeTimesOut: connections whose handshake never completes
// are an error, and nothing waits for them afterwards.
func TestIdleHandshakeTimesOut(t *testing.T) {
	done := make(chan error, 1)
	go func() {
		_, err := loadgen.Idle(context.Background(), loadgen.IdleConfig{
			URL: deaf(t), Connections: 3, ServerPIDs: []int{os.Getpid()}, SetupTimeout: 200 * time.Millisecond,
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "handshake") {
			t.Fatalf("err = %v, want a handshake error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Idle did not return")
	}
}

// TestRunWithHistory gives the document a history before the load: its
// creator uploads it in one burst, the other clients fetch all of it,
// and the load then runs on top.
func TestRunWithHistory(t *testing.T) {
	srv := startServer(t, room.Config{})
	const history = 2000
	res, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: srv.url, Docs: 1, ClientsPerDoc: 3, History: history, Rate: 100, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.History != history || res.Edits == 0 || res.Delivered != res.Expected || res.Errors != 0 {
		t.Fatalf("history %d, edits %d, delivered %d of %d, errors %d %q", res.History, res.Edits, res.Delivered, res.Expected, res.Errors, res.ErrorSamples)
	}
	// The two other clients each received the history: a change is over
	// 40 bytes.
	if floor := int64(2 * history * 40); res.BytesIn < floor {
		t.Fatalf("clients received %d bytes; the history alone is over %d", res.BytesIn, floor)
	}
}
