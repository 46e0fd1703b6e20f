// Command tandem runs the Tandem sync server.
//
// With no configuration it serves automerge-repo clients on
// ws://127.0.0.1:3030 and keeps documents in ./tandem-data. See the README
// for every setting.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		cancel() // first signal: drain
		<-sigs
		fmt.Fprintln(os.Stderr, "tandem: second signal, exiting now")
		os.Exit(2)
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	store, err := docstore.OpenSQLite(ctx, cfg.DataDir)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	storageID, err := store.StorageID(ctx)
	if err != nil {
		return fmt.Errorf("storage ID: %w", err)
	}

	rooms := room.NewRegistry(store, room.Config{
		IdleTimeout:    cfg.IdleTimeout,
		CompactChanges: cfg.CompactChanges,
		DrainTimeout:   cfg.DrainTimeout,
		Logger:         log,
	})
	h := hub.New(rooms, hub.Config{
		PeerID:    wire.PeerID(cfg.PeerID),
		StorageID: storageID,
		QueueSize: cfg.QueueSize,
		Logger:    log,
	})
	srv := api.NewServer(h, rooms, api.Config{
		MaxFrameBytes: cfg.MaxFrameBytes,
		PingInterval:  cfg.PingInterval,
		PongTimeout:   cfg.PongTimeout,
		Version:       version,
		Logger:        log,
	})

	// Listen only now that the store and storage ID are ready, so that no
	// client can connect to a server that cannot answer it yet.
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "peer_id", cfg.PeerID,
		"storage_id", storageID, "version", version)
	if cfg.AllowAnonymous {
		log.Warn("anonymous access: any client that can reach this address can read and write every document")
	} else {
		log.Info("anonymous access on loopback only")
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

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
