// Command tandem runs the Tandem sync server.
//
// With no configuration it serves automerge-repo clients on
// ws://127.0.0.1:3030 and keeps documents in ./tandem-data. See the README
// for every setting. Its subcommands, one file each:
//
//	tandem [serve] [flags]   run the server (serve.go)
//	tandem migrate [flags]   apply the store's migrations and exit (migrate.go)
//	tandem import --automerge-repo-dir DIR [flags]
//	                         import an automerge-repo sync server's data directory (import.go)
//	tandem token [flags]     mint an access token (token.go)
//	tandem bench [flags]     drive a sync server with simulated clients and report (bench.go)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
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
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run dispatches to a subcommand: the first argument names it, and
// without one (or when it is a flag) the server runs. Its errors say which
// command failed ("tandem: …", "tandem token: …").
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	command := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		command, args = args[0], args[1:]
	}
	switch command {
	case "token":
		return tokenCommand(args, getenv, stdout, stderr, time.Now)
	case "bench":
		err := benchCommand(ctx, args, stdout, stderr)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			return fmt.Errorf("tandem bench: %w", err)
		}
		return err
	case "import":
		err := importCommand(ctx, args, getenv, stdout, stderr)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			return fmt.Errorf("tandem import: %w", err)
		}
		return err
	case "serve", "migrate":
		cfg, err := parseConfig(command, args, getenv, stderr)
		if err == nil {
			log := newLogger(cfg, stderr)
			if command == "migrate" {
				err = migrate(ctx, cfg, log)
			} else {
				err = serve(ctx, cfg, log)
			}
		}
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			return fmt.Errorf("tandem: %w", err)
		}
		return err
	default:
		return fmt.Errorf("tandem: unknown command %q (want serve, migrate, import, token or bench; see tandem -h)", command)
	}
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
