package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/api/auth"
	"github.com/tandem-sync/tandem/api/docjson"
	"github.com/tandem-sync/tandem/docstore/postgres"
	"github.com/tandem-sync/tandem/docstore/sqlite"
	"github.com/tandem-sync/tandem/metrics"
	"github.com/tandem-sync/tandem/sync/cluster"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// serve runs the server until ctx is canceled, then drains.
func serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	storageID, err := store.StorageID(ctx)
	if err != nil {
		return fmt.Errorf("storage ID: %w", err)
	}

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mets, err := metrics.New(promReg)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}

	var node *cluster.Node
	if cfg.NatsURL != "" {
		node, err = cluster.Connect(ctx, cluster.Config{URL: cfg.NatsURL, NodeID: cfg.NodeID, Prefix: cfg.NatsPrefix, Logger: log})
		if err != nil {
			return err
		}
		// After the rooms' drain (deferred later, run earlier), so that
		// their last changes are published.
		defer node.Close()
	}
	var replicator room.Replicator
	var relay hub.Relay
	if node != nil {
		replicator, relay = node, node
	}

	rooms := room.NewRegistry(store, room.Config{
		IdleTimeout:      cfg.IdleTimeout,
		CompactChanges:   cfg.CompactChanges,
		CompactMemory:    cfg.CompactMemory,
		CoreMemory:       cfg.CoreMemory,
		DrainTimeout:     cfg.DrainTimeout,
		UnavailableGrace: cfg.roomUnavailableGrace(),
		Limits:           cfg.Limits,
		Replicator:       replicator,
		Logger:           log,
		Metrics:          mets,
	})
	h := hub.New(rooms, hub.Config{
		PeerID:         wire.PeerID(cfg.PeerID),
		StorageID:      storageID,
		QueueBytes:     cfg.QueueBytes,
		MaxDocs:        cfg.MaxDocsPerConn,
		EphemeralRate:  cfg.EphemeralRate,
		EphemeralBurst: cfg.EphemeralBurst,
		PingInterval:   cfg.PingInterval,
		PongTimeout:    cfg.PongTimeout,
		Relay:          relay,
		Logger:         log,
		Metrics:        mets,
	})
	if node != nil {
		node.Start(rooms, h)
	}
	access, err := accessConfig(cfg, store)
	if err != nil {
		return err
	}
	var outbox webhook.Outbox
	senderCtx, stopSender := context.WithCancel(context.WithoutCancel(ctx))
	senderDone := make(chan struct{})
	if len(cfg.WebhookURLs) > 0 {
		outbox = store
		sender := webhook.NewSender(webhook.Config{
			Outbox:    store,
			Endpoints: cfg.WebhookURLs,
			Secret:    []byte(cfg.WebhookSecret),
			Heads:     docHeads(rooms),
			Retention: cfg.WebhookRetention,
			Logger:    log,
		})
		go func() {
			defer close(senderDone)
			sender.Run(senderCtx)
		}()
		log.Info("webhooks on", "endpoints", len(cfg.WebhookURLs), "debounce", cfg.WebhookDebounce)
	} else {
		close(senderDone)
	}
	defer func() {
		stopSender()
		<-senderDone
	}()
	srv := api.NewServer(h, rooms, api.Config{
		Access:        access,
		Outbox:        outbox,
		MaxFrameBytes: cfg.MaxFrameBytes,
		StorePing:     storePing(store),
		Catalog:       store,
		Gatherer:      promReg,
		Version:       version,
		Logger:        log,
	})

	if cfg.PprofAddr != "" {
		stopPprof, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	// Listen only now that the store and storage ID are ready, so that no
	// client can connect to a server that cannot answer it yet.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	gcCtx, stopGC := context.WithCancel(context.Background())
	defer stopGC()
	go collectWhenQuiet(gcCtx, 15*time.Second)
	log.Info("listening", "addr", ln.Addr().String(), "store", storeName(cfg), "peer_id", cfg.PeerID,
		"storage_id", storageID, "node_id", cfg.NodeID, "version", version)
	switch {
	case access.Verifier == nil && cfg.AllowAnonymous:
		log.Warn("anonymous access: any client that can reach this address can read and write every document, and use the REST API unless --admin-key is set")
	case access.Verifier == nil:
		log.Info("anonymous access on loopback only: clients need no token", "rest_api_protected", access.AdminKey != "")
	case cfg.AllowAnonymous:
		log.Warn("access tokens accepted, and clients without a token get full access (--allow-anonymous)")
	default:
		log.Info("access tokens required", "algorithms", access.Verifier.Algorithms())
	}

	select {
	case err := <-serveErr:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down: draining rooms and closing peers")
	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
	defer cancel()
	srv.SetDraining()
	if err := httpSrv.Shutdown(drainCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	h.Close()
	if err := rooms.Close(drainCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// servePprof serves the Go runtime's profiles (net/http/pprof) on their
// own loopback listener (the configuration refuses other addresses), so
// that they never share the public address. It returns the function that
// stops them.
func servePprof(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof server", "err", err)
		}
	}()
	log.Info("profiles served", "addr", ln.Addr().String(), "path", "/debug/pprof/")
	return func() { _ = srv.Close() }, nil
}

// docHeads gives the webhook sender a document's current heads, read in
// its room without materializing the document.
func docHeads(rooms *room.Registry) func(context.Context, wire.DocID) ([]string, error) {
	return func(ctx context.Context, id wire.DocID) ([]string, error) {
		var heads []string
		err := rooms.Peek(ctx, id, func(doc *core.Doc, _ bool) error {
			heads = docjson.FormatHeads(doc.Heads())
			return nil
		})
		return heads, err
	}
}

// accessConfig builds the access rules from the configuration.
func accessConfig(cfg Config, st store) (api.AccessConfig, error) {
	a := api.AccessConfig{
		AdminKey:       cfg.AdminKey,
		AllowAnonymous: cfg.AllowAnonymous,
		MetricsAuth:    cfg.MetricsAuth,
		AllowedOrigins: cfg.AllowedOrigins,
		Revocations:    st,
	}
	if cfg.TokenSecret == "" && cfg.TokenPublicKey == "" {
		return a, nil
	}
	vc := auth.VerifierConfig{Secret: []byte(cfg.TokenSecret), Leeway: 30 * time.Second}
	if cfg.TokenPublicKey != "" {
		key, err := auth.ParseEd25519PublicKey(cfg.TokenPublicKey)
		if err != nil {
			return a, fmt.Errorf("--token-public-key: %w", err)
		}
		vc.PublicKeys = []ed25519.PublicKey{key}
	}
	if cfg.TokenSecret == "" {
		vc.Secret = nil
	}
	v, err := auth.NewVerifier(vc)
	if err != nil {
		return a, fmt.Errorf("access tokens: %w", err)
	}
	a.Verifier = v
	return a, nil
}

// store is what the binary needs of a document store: what rooms use and
// what the REST API lists. Both docstore stores are one.
type store interface {
	room.Store
	api.Catalog
	api.Revocations
	webhook.Outbox
}

// openStore opens Postgres when a database URL is configured, and the
// embedded SQLite store otherwise. Both apply their migrations first.
func openStore(ctx context.Context, cfg Config, log *slog.Logger) (store, error) {
	webhooks := len(cfg.WebhookURLs) > 0
	if cfg.DatabaseURL != "" {
		var opts []postgres.Option
		if webhooks {
			opts = append(opts, postgres.WithOutbox(cfg.WebhookDebounce))
		}
		if webhooks && cfg.NatsURL != "" {
			// Every node runs a sender: each event goes to one of them.
			opts = append(opts, postgres.WithEventClaims(eventClaimLease))
		}
		st, err := postgres.Open(ctx, cfg.DatabaseURL, opts...)
		if err != nil {
			return nil, fmt.Errorf("open postgres store: %w", err)
		}
		return st, nil
	}
	var opts []sqlite.Option
	if webhooks {
		opts = append(opts, sqlite.WithOutbox(cfg.WebhookDebounce))
	}
	st, err := sqlite.Open(ctx, cfg.DataDir, opts...)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store in %s: %w", cfg.DataDir, err)
	}
	return st, nil
}

// eventClaimLease is how long a node of a cluster has to deliver the
// webhook events it claimed before another node may take them.
const eventClaimLease = 2 * time.Minute

func storeName(cfg Config) string {
	if cfg.DatabaseURL != "" {
		return "postgres"
	}
	return "sqlite:" + cfg.DataDir
}

// storePing returns the store's Ping for /readyz, if it has one.
func storePing(st room.Store) func(context.Context) error {
	if p, ok := st.(interface{ Ping(context.Context) error }); ok {
		return p.Ping
	}
	return nil
}
