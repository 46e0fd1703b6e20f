package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-sync/tandem/docstore/sqlite"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{name: "defaults", check: func(c Config) bool {
			return c.Addr == "127.0.0.1:3030" && c.DataDir == "./tandem-data" && c.MaxFrameBytes == 100<<20 &&
				c.IdleTimeout == time.Minute && c.QueueBytes == 32<<20 && c.MaxDocsPerConn == 5000 && c.EphemeralRate == 100 && c.EphemeralBurst == 200 && strings.HasPrefix(c.PeerID, "tandem-") &&
				c.WebhookRetention == 7*24*time.Hour && c.UnavailableGrace == 250*time.Millisecond && c.roomUnavailableGrace() == 250*time.Millisecond
		}},
		{name: "unavailable grace from the environment", env: map[string]string{"TANDEM_UNAVAILABLE_GRACE": "1s"},
			check: func(c Config) bool {
				return c.UnavailableGrace == time.Second && c.roomUnavailableGrace() == time.Second
			}},
		{name: "unavailable grace 0 answers at once", args: []string{"--unavailable-grace", "0"},
			check: func(c Config) bool { return c.UnavailableGrace == 0 && c.roomUnavailableGrace() < 0 }},
		{name: "negative unavailable grace", args: []string{"--unavailable-grace", "-1s"}, wantErr: "--unavailable-grace"},
		{name: "PORT sets the port", env: map[string]string{"PORT": "4000"}, check: func(c Config) bool { return c.Addr == "127.0.0.1:4000" }},
		{name: "TANDEM_ADDR beats PORT", env: map[string]string{"PORT": "4000", "TANDEM_ADDR": "127.0.0.1:5000"}, check: func(c Config) bool { return c.Addr == "127.0.0.1:5000" }},
		{name: "flag beats environment", args: []string{"--addr", "localhost:6000", "--data-dir", "/tmp/x"},
			env:   map[string]string{"TANDEM_ADDR": "127.0.0.1:5000", "TANDEM_DATA_DIR": "/tmp/y"},
			check: func(c Config) bool { return c.Addr == "localhost:6000" && c.DataDir == "/tmp/x" }},
		{name: "durations and sizes from the environment", env: map[string]string{"TANDEM_IDLE_TIMEOUT": "5s", "TANDEM_MAX_FRAME_BYTES": "2048"},
			check: func(c Config) bool { return c.IdleTimeout == 5*time.Second && c.MaxFrameBytes == 2048 }},
		{name: "IPv6 loopback", args: []string{"--addr", "[::1]:3030"}, check: func(c Config) bool { return c.Addr == "[::1]:3030" }},
		{name: "all interfaces need --allow-anonymous", args: []string{"--addr", ":3030"}, wantErr: "not a loopback address"},
		{name: "a public address needs --allow-anonymous", args: []string{"--addr", "0.0.0.0:3030"}, wantErr: "--allow-anonymous"},
		{name: "--allow-anonymous allows it", args: []string{"--addr", "0.0.0.0:3030", "--allow-anonymous"}, check: func(c Config) bool { return c.AllowAnonymous }},
		{name: "bad duration", env: map[string]string{"TANDEM_IDLE_TIMEOUT": "soon"}, wantErr: "TANDEM_IDLE_TIMEOUT"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "--log-level"},
		{name: "stray argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "webhook retention", env: map[string]string{"TANDEM_WEBHOOK_RETENTION": "24h"}, check: func(c Config) bool { return c.WebhookRetention == 24*time.Hour }},
		{name: "compaction memory budget", args: []string{"--compact-memory", "536870912"}, check: func(c Config) bool { return c.CompactMemory == 512<<20 }},
		{name: "compaction memory budget by default", check: func(c Config) bool { return c.CompactMemory == 256<<20 }},
		{name: "core memory budget", args: []string{"--core-memory", "1048576"}, check: func(c Config) bool { return c.CoreMemory == 1<<20 }},
		{name: "core memory budget by default", check: func(c Config) bool { return c.CoreMemory == 1<<30 }},
		{name: "pprof off by default", check: func(c Config) bool { return c.PprofAddr == "" }},
		{name: "pprof on loopback", args: []string{"--pprof-addr", "127.0.0.1:6060"}, check: func(c Config) bool { return c.PprofAddr == "127.0.0.1:6060" }},
		{name: "pprof from the environment", env: map[string]string{"TANDEM_PPROF_ADDR": "localhost:6060"}, check: func(c Config) bool { return c.PprofAddr == "localhost:6060" }},
		{name: "pprof only on loopback", args: []string{"--pprof-addr", "0.0.0.0:6060", "--allow-anonymous"}, wantErr: "--pprof-addr"},
		{name: "pprof on all interfaces refused", args: []string{"--pprof-addr", ":6060"}, wantErr: "loopback address only"},
		{name: "no cluster by default", check: func(c Config) bool { return c.NatsURL == "" && c.NodeID == "" }},
		{name: "a cluster needs Postgres", args: []string{"--nats-url", "nats://127.0.0.1:4222"}, wantErr: "--nats-url needs --database-url"},
		{name: "a cluster needs Postgres, from the environment", env: map[string]string{"TANDEM_NATS_URL": "nats://127.0.0.1:4222"}, wantErr: "embedded SQLite store"},
		{name: "a cluster node gets a node ID and its own peer ID",
			env: map[string]string{"TANDEM_NATS_URL": "nats://127.0.0.1:4222", "DATABASE_URL": "postgres://db/x"},
			check: func(c Config) bool {
				return c.NatsURL != "" && c.NatsPrefix == "tandem" && len(c.NodeID) == 12 && strings.HasSuffix(c.PeerID, "-"+c.NodeID)
			}},
		{name: "a cluster node keeps a peer ID it is given",
			args:  []string{"--nats-url", "nats://n:4222", "--database-url", "postgres://db/x", "--peer-id", "p1", "--node-id", "n1", "--nats-subject-prefix", "app"},
			check: func(c Config) bool { return c.PeerID == "p1" && c.NodeID == "n1" && c.NatsPrefix == "app" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig("serve", tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Fatalf("unexpected config %+v", c)
			}
		})
	}
}

func TestRunDispatch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown command", []string{"bogus"}, `tandem: unknown command "bogus"`},
		{"token errors name the command", []string{"token"}, "tandem token: no signing key"},
		{"serve flags are checked", []string{"serve", "--log-level", "loud"}, "tandem: --log-level"},
		{"migrate runs and exits", []string{"migrate", "--data-dir", dir}, ""},
		{"bench targets loopback only", []string{"bench", "--url", "ws://192.0.2.1:3030/"}, "tandem bench: url"},
		{"bench --idle needs the server's pid", []string{"bench", "--idle", "10"}, "tandem bench: --idle needs --server-pid"},
		{"bench modes exclude each other", []string{"bench", "--idle", "10", "--ramp"}, "tandem bench: --ramp and --idle"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Fatalf("run(%q) = %v, want %q", tt.args, err, tt.wantErr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, sqlite.File)); err != nil {
		t.Errorf("migrate made no database: %v", err)
	}
}
