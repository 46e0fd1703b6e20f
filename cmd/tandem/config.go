package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
)

// Config is everything the binary reads from flags and the environment.
// Every setting is a flag --name and an environment variable TANDEM_NAME;
// the flag wins. The README's configuration table lists them.
type Config struct {
	Addr            string
	DataDir         string
	DatabaseURL     string
	TokenSecret     string
	TokenPublicKey  string
	AdminKey        string
	AllowedOrigins  []string
	MetricsAuth     bool
	WebhookURLs     []string
	WebhookSecret   string
	WebhookDebounce time.Duration
	// WebhookRetention is how long delivered webhook events stay in the
	// delivery log.
	WebhookRetention time.Duration
	AllowAnonymous   bool
	LogLevel         slog.Level
	LogFormat        string
	PeerID           string
	MaxFrameBytes    int64
	QueueBytes       int64
	MaxDocsPerConn   int
	EphemeralRate    float64
	EphemeralBurst   int
	IdleTimeout      time.Duration
	PingInterval     time.Duration
	PongTimeout      time.Duration
	CompactChanges   int64
	CompactMemory    int64
	CoreMemory       int64
	DrainTimeout     time.Duration
	// UnavailableGrace is how long a request for a document that exists
	// nowhere waits for another peer to bring it before it is answered
	// doc-unavailable; zero answers at once.
	UnavailableGrace time.Duration
	// Limits bound what one peer's sync message or change may make a
	// document validate and hold (--max-ops-per-change and the others).
	Limits core.Limits
	// PprofAddr, when set, serves net/http/pprof on this loopback address
	// (a listener of its own, apart from Addr).
	PprofAddr string
	// NatsURL, when set, makes this node one of a cluster sharing the
	// Postgres store (sync/cluster); NatsPrefix starts its subjects.
	NatsURL    string
	NatsPrefix string
	// NodeID names this node in the cluster (default: random per start).
	NodeID string
}

// parseConfig reads the flags of command (serve, migrate or import) from
// args, over environment variables (getenv). extra defines a command's own
// flags on the same flag set (import's --automerge-repo-dir).
func parseConfig(command string, args []string, getenv func(string) string, stderr io.Writer, extra ...func(*flag.FlagSet)) (Config, error) {
	env := func(name, def string) string {
		if v := getenv("TANDEM_" + name); v != "" {
			return v
		}
		return def
	}
	addrDefault := "127.0.0.1:3030"
	if p := getenv("PORT"); p != "" {
		addrDefault = "127.0.0.1:" + p
	}

	var c Config
	var logLevel string
	fs := flag.NewFlagSet("tandem "+command, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: tandem [serve|migrate] [flags]\n       tandem import --automerge-repo-dir DIR [flags]\n       tandem token [flags]\n       tandem bench [flags]\n\n  tandem [serve]  run the server\n  tandem migrate  apply database migrations and exit\n  tandem import   import an automerge-repo sync server's data directory and exit\n  tandem token    mint an access token (tandem token -h)\n  tandem bench    drive a sync server with simulated clients and report (tandem bench -h)\n\nflags:")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", env("ADDR", addrDefault), "listen address host:port (env TANDEM_ADDR; PORT sets only the port)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", "./tandem-data"), "directory of the embedded SQLite store")
	dbURL := getenv("TANDEM_DATABASE_URL")
	if dbURL == "" {
		dbURL = getenv("DATABASE_URL")
	}
	fs.StringVar(&c.DatabaseURL, "database-url", dbURL, "Postgres URL (env DATABASE_URL or TANDEM_DATABASE_URL); empty: the embedded SQLite store")
	fs.StringVar(&c.TokenSecret, "token-secret", env("TOKEN_SECRET", ""), "HS256 secret (32+ bytes) that access tokens are signed with")
	fs.StringVar(&c.TokenPublicKey, "token-public-key", env("TOKEN_PUBLIC_KEY", ""), "Ed25519 public key (PEM or base64) that EdDSA access tokens are verified with")
	fs.StringVar(&c.AdminKey, "admin-key", env("ADMIN_KEY", ""), "key for the REST API (Authorization: Bearer <key>)")
	var hooks string
	fs.StringVar(&hooks, "webhook-urls", env("WEBHOOK_URLS", ""), "comma-separated URLs that receive signed change events")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", env("WEBHOOK_SECRET", ""), "HMAC-SHA256 key that signs webhook requests")
	var origins string
	fs.StringVar(&origins, "allowed-origins", env("ALLOWED_ORIGINS", ""), "comma-separated host patterns browsers may connect from (empty: any)")
	fs.StringVar(&logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", env("LOG_FORMAT", "text"), "text or json")
	fs.StringVar(&c.PeerID, "peer-id", env("PEER_ID", defaultPeerID()), "the server's automerge-repo peer ID")
	fs.StringVar(&c.NatsURL, "nats-url", env("NATS_URL", ""), "NATS server URL: run as one node of a cluster sharing the Postgres store (needs --database-url); empty: a single node")
	fs.StringVar(&c.NatsPrefix, "nats-subject-prefix", env("NATS_SUBJECT_PREFIX", "tandem"), "prefix of the cluster's NATS subjects; one per cluster on a NATS server")
	fs.StringVar(&c.NodeID, "node-id", env("NODE_ID", ""), "this node's ID in the cluster; empty: random at each start")
	fs.StringVar(&c.PprofAddr, "pprof-addr", env("PPROF_ADDR", ""), "serve Go profiles (/debug/pprof/) on this loopback host:port; empty: off")
	var err error
	boolFlag := func(p *bool, name, envName, usage string) {
		v, perr := strconv.ParseBool(env(envName, "false"))
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("TANDEM_%s: %w", envName, perr))
		}
		fs.BoolVar(p, name, v, usage)
	}
	intFlag := func(p *int64, name, envName string, def int64, usage string) {
		v, perr := strconv.ParseInt(env(envName, strconv.FormatInt(def, 10)), 10, 64)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("TANDEM_%s: %w", envName, perr))
		}
		fs.Int64Var(p, name, v, usage)
	}
	durFlag := func(p *time.Duration, name, envName string, def time.Duration, usage string) {
		v, perr := time.ParseDuration(env(envName, def.String()))
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("TANDEM_%s: %w", envName, perr))
		}
		fs.DurationVar(p, name, v, usage)
	}
	var maxDocs, ephRate, ephBurst int64
	var opsPerChange, opsPerMessage, predsPerOp, heldChanges int64
	defLim := core.DefaultLimits()
	boolFlag(&c.AllowAnonymous, "allow-anonymous", "ALLOW_ANONYMOUS", "allow clients without a token (required beyond loopback when no token key is set)")
	boolFlag(&c.MetricsAuth, "metrics-auth", "METRICS_AUTH", "require the admin key or an admin token for /metrics")
	intFlag(&c.MaxFrameBytes, "max-frame-bytes", "MAX_FRAME_BYTES", 100<<20, "largest WebSocket frame accepted")
	intFlag(&c.QueueBytes, "queue-bytes", "QUEUE_BYTES", hub.DefaultQueueBytes, "outbound bytes queued per peer before it is dropped as slow (4001)")
	intFlag(&maxDocs, "max-docs-per-conn", "MAX_DOCS_PER_CONN", hub.DefaultMaxDocs, "documents one connection may sync; more are answered doc-unavailable")
	intFlag(&ephRate, "ephemeral-rate", "EPHEMERAL_RATE", hub.DefaultEphemeralRate, "ephemeral messages per second one connection may send; excess is dropped")
	intFlag(&ephBurst, "ephemeral-burst", "EPHEMERAL_BURST", hub.DefaultEphemeralBurst, "ephemeral messages one connection may send at once")
	intFlag(&c.CompactChanges, "compact-changes", "COMPACT_CHANGES", 1000, "logged changes per document that trigger compaction")
	intFlag(&c.CoreMemory, "core-memory", "CORE_MEMORY", 1<<30, "memory the Automerge core documents materialized for the HTTP API may take together (about 500 bytes per op); past it the longest unused are released")
	intFlag(&c.CompactMemory, "compact-memory", "COMPACT_MEMORY", 256<<20, "memory one compaction may take (about 120 bytes per op and 1,000 per change of the document's history); larger documents stay uncompacted")
	durFlag(&c.IdleTimeout, "idle-timeout", "IDLE_TIMEOUT", time.Minute, "how long a room without peers stays in memory")
	durFlag(&c.PingInterval, "ping-interval", "PING_INTERVAL", 5*time.Second, "keepalive ping interval")
	durFlag(&c.PongTimeout, "pong-timeout", "PONG_TIMEOUT", 10*time.Second, "drop a peer whose pong is this late")
	durFlag(&c.WebhookDebounce, "webhook-debounce", "WEBHOOK_DEBOUNCE", time.Second, "at most one document.changed event per document per this window")
	durFlag(&c.WebhookRetention, "webhook-retention", "WEBHOOK_RETENTION", 7*24*time.Hour, "how long delivered webhook events stay in the delivery log")
	durFlag(&c.DrainTimeout, "drain-timeout", "DRAIN_TIMEOUT", 15*time.Second, "longest graceful shutdown")
	intFlag(&opsPerChange, "max-ops-per-change", "MAX_OPS_PER_CHANGE", int64(defLim.MaxOpsPerChange), "ops one change may hold; a change over it is refused (1007)")
	intFlag(&opsPerMessage, "max-ops-per-message", "MAX_OPS_PER_MESSAGE", int64(defLim.MaxOpsPerMessage), "ops the changes of one sync message may hold together; a message over it is refused (1007)")
	intFlag(&predsPerOp, "max-preds-per-op", "MAX_PREDS_PER_OP", int64(defLim.MaxPredsPerOp), "predecessors one op may have, and successors one op may gain")
	intFlag(&heldChanges, "max-held-changes", "MAX_HELD_CHANGES", int64(defLim.MaxPendingChanges), "changes a document holds back while their dependencies have not arrived")
	durFlag(&c.UnavailableGrace, "unavailable-grace", "UNAVAILABLE_GRACE", room.DefaultUnavailableGrace, "how long a request for a document that exists nowhere waits for another peer to upload it before doc-unavailable (0: at once)")
	if err != nil {
		return Config{}, err
	}
	for _, define := range extra {
		define(fs)
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.NatsURL != "" {
		if c.DatabaseURL == "" {
			return Config{}, errors.New("--nats-url needs --database-url: the nodes of a cluster share one Postgres store (the embedded SQLite store is one node's)")
		}
		if c.NodeID == "" {
			c.NodeID = randomNodeID()
		}
		peerSet := getenv("TANDEM_PEER_ID") != ""
		fs.Visit(func(f *flag.Flag) { peerSet = peerSet || f.Name == "peer-id" })
		if !peerSet {
			c.PeerID += "-" + c.NodeID // each node its own peer ID
		}
	}
	c.MaxDocsPerConn, c.EphemeralRate, c.EphemeralBurst = int(maxDocs), float64(ephRate), int(ephBurst)
	if opsPerChange < 1 || opsPerMessage < 1 || predsPerOp < 1 || heldChanges < 1 {
		return Config{}, errors.New("--max-ops-per-change, --max-ops-per-message, --max-preds-per-op and --max-held-changes must be at least 1")
	}
	c.Limits = core.Limits{MaxOpsPerChange: int(opsPerChange), MaxOpsPerMessage: int(opsPerMessage),
		MaxPredsPerOp: int(predsPerOp), MaxPendingChanges: int(heldChanges)}
	if c.QueueBytes < 1024 || c.MaxDocsPerConn < 1 || c.EphemeralRate < 1 || c.EphemeralBurst < 1 {
		return Config{}, errors.New("--queue-bytes must be at least 1024, and --max-docs-per-conn, --ephemeral-rate and --ephemeral-burst at least 1")
	}
	for _, u := range strings.Split(hooks, ",") {
		if u = strings.TrimSpace(u); u != "" {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return Config{}, fmt.Errorf("--webhook-urls: %q is not an http(s) URL", u)
			}
			c.WebhookURLs = append(c.WebhookURLs, u)
		}
	}
	if len(c.WebhookURLs) > 0 && c.WebhookSecret == "" {
		return Config{}, errors.New("--webhook-urls needs --webhook-secret (receivers verify the signature with it)")
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	if c.UnavailableGrace < 0 {
		return Config{}, fmt.Errorf("--unavailable-grace %v is negative (0 answers at once)", c.UnavailableGrace)
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return Config{}, fmt.Errorf("--log-level: %w", err)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return Config{}, fmt.Errorf("--log-format must be text or json, not %q", c.LogFormat)
	}
	if c.MaxFrameBytes < 1024 {
		return Config{}, fmt.Errorf("--max-frame-bytes %d is too small", c.MaxFrameBytes)
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return Config{}, fmt.Errorf("--addr %q: %w", c.Addr, err)
	}
	if c.PprofAddr != "" {
		phost, _, err := net.SplitHostPort(c.PprofAddr)
		if err != nil {
			return Config{}, fmt.Errorf("--pprof-addr %q: %w", c.PprofAddr, err)
		}
		if !isLoopback(phost) {
			return Config{}, fmt.Errorf("--pprof-addr %q: profiles are served on a loopback address only", c.PprofAddr)
		}
	}
	if !isLoopback(host) && !c.AllowAnonymous && c.TokenSecret == "" && c.TokenPublicKey == "" {
		return Config{}, fmt.Errorf("--addr %q is not a loopback address: listening there needs a token key (--token-secret or --token-public-key) or --allow-anonymous", c.Addr)
	}
	return c, nil
}

// roomUnavailableGrace is UnavailableGrace as room.Config takes it, where
// zero selects the default and a negative value answers at once.
func (c Config) roomUnavailableGrace() time.Duration {
	if c.UnavailableGrace == 0 {
		return -1
	}
	return c.UnavailableGrace
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// randomNodeID returns a node ID for a node started without one.
func randomNodeID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func defaultPeerID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "server"
	}
	return "tandem-" + h
}
