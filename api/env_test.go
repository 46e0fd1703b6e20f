package api_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/docstore/postgres"
	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/metrics"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
)

// testStore is what the API needs of a store: rooms keep documents in it
// and the REST API lists them.
type testStore interface {
	room.Store
	api.Catalog
	api.Revocations
}

// storeKind opens a fresh, empty store for one test.
type storeKind struct {
	name string
	open func(t *testing.T) testStore
}

// storeKinds are the stores every REST test runs on.
var storeKinds = []storeKind{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachStore runs fn as a parallel subtest per store kind.
func forEachStore(t *testing.T, fn func(t *testing.T, sk storeKind)) {
	t.Helper()
	for _, sk := range storeKinds {
		t.Run(sk.name, func(t *testing.T) {
			t.Parallel()
			fn(t, sk)
		})
	}
}

func openSQLite(t *testing.T) testStore {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// openPostgres creates an empty database for one test (dropped when it
// ends) and opens a store on it.
func openPostgres(t *testing.T) testStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := postgres.Open(ctx, storetest.NewPostgresDatabase(t))
	if err != nil {
		t.Fatalf("open postgres store: %v", err)
	}
	return st
}

// env is one running server: store, rooms, hub, API and metrics.
type env struct {
	ts    *httptest.Server
	hub   *hub.Hub
	rooms *room.Registry
	srv   *api.Server
	store testStore
	reg   *prometheus.Registry
}

// newEnv wires a server as cmd/tandem does, over a fresh store of the given
// kind, with its metrics on a fresh Prometheus registry. roomOpts adjust the
// rooms' configuration.
func newEnv(t *testing.T, open func(t *testing.T) testStore, cfg api.Config, roomOpts ...func(*room.Config)) *env {
	t.Helper()
	return newEnvWithHub(t, open, cfg, hub.Config{}, roomOpts...)
}

// newEnvWithHub is newEnv with hub settings (keepalive, limits) too.
func newEnvWithHub(t *testing.T, open func(t *testing.T) testStore, cfg api.Config, hcfg hub.Config, roomOpts ...func(*room.Config)) *env {
	t.Helper()
	st := open(t)
	reg := prometheus.NewRegistry()
	mets, err := metrics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	storageID, err := st.StorageID(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rcfg := room.Config{Metrics: mets}
	for _, o := range roomOpts {
		o(&rcfg)
	}
	rooms := room.NewRegistry(st, rcfg)
	hcfg.PeerID, hcfg.StorageID, hcfg.Metrics = "tandem-test", storageID, mets
	h := hub.New(rooms, hcfg)
	cfg.Catalog = st
	cfg.Access.Revocations = st // as cmd/tandem wires it
	if cfg.Gatherer == nil {
		cfg.Gatherer = reg
	}
	srv := api.NewServer(h, rooms, cfg)
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
	return &env{ts: ts, hub: h, rooms: rooms, srv: srv, store: st, reg: reg}
}
