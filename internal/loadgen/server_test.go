package loadgen_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
)

// TestMain checks that runs leave no goroutine behind: every client's
// reader, the scheduler, the workers, the samplers.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a Tandem wired as cmd/tandem wires it (SQLite store, rooms,
// hub, HTTP API) on an httptest listener on loopback.
type server struct {
	url   string
	hub   *hub.Hub
	rooms *room.Registry
}

func startServer(t *testing.T, rcfg room.Config) *server {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storageID, err := st.StorageID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rooms := room.NewRegistry(st, rcfg)
	h := hub.New(rooms, hub.Config{PeerID: "tandem-test", StorageID: storageID})
	srv := api.NewServer(h, rooms, api.Config{Catalog: st, Access: api.AccessConfig{Revocations: st}})
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		h.Close()
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := rooms.Close(ctx); err != nil {
			t.Errorf("close rooms: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &server{url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/", hub: h, rooms: rooms}
}
