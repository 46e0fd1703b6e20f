// Package api is Tandem's HTTP surface on chi: the WebSocket endpoint for
// automerge-repo clients (on any path, outside any request timeout), the
// demo (web.go), and health checks.
package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-sync/tandem/sync/hub"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/webhook"
)

// Config tunes the HTTP surface. The zero value of each field selects its
// default.
type Config struct {
	// MaxFrameBytes bounds an incoming WebSocket frame; a larger one closes
	// the connection with 1009. Zero means 100 MiB, the official server's
	// limit.
	MaxFrameBytes int64
	// StorePing, when set, is called by /readyz to check that the store
	// answers; nil checks only the outcome of the rooms' last writes.
	StorePing func(ctx context.Context) error
	// Catalog lists and describes stored documents for the REST API.
	// Required for the /api/v1 routes.
	Catalog Catalog
	// MaxBodyBytes bounds REST request bodies (a document import is the
	// largest). Zero means 64 MiB.
	MaxBodyBytes int64
	// RequestTimeout bounds each REST request. Zero means 30 s.
	RequestTimeout time.Duration
	// Gatherer serves /metrics in the Prometheus format; nil serves no
	// /metrics.
	Gatherer prometheus.Gatherer
	// Access says who may connect and use the REST API.
	Access AccessConfig
	// Outbox serves the webhook delivery log; nil when webhooks are off.
	Outbox webhook.Outbox
	// Version is shown on the landing page.
	Version string
	// Logger receives request events. Nil discards them.
	Logger *slog.Logger
}

// Server routes HTTP requests and WebSocket upgrades.
type Server struct {
	cfg      Config
	hub      *hub.Hub
	rooms    *room.Registry
	log      *slog.Logger
	router   chi.Router
	draining atomic.Bool
	frames   *frameReader
}

// NewServer returns the HTTP handler for a hub and its rooms.
func NewServer(h *hub.Hub, rooms *room.Registry, cfg Config) *Server {
	if cfg.MaxFrameBytes <= 0 {
		cfg.MaxFrameBytes = 100 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 64 << 20
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, hub: h, rooms: rooms, log: cfg.Logger, frames: newFrameReader(cfg.MaxFrameBytes)}
	r := chi.NewRouter()
	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	s.mountWeb(r) // the demo: /, /d/{id}, /admin, /assets/, /config.json
	if cfg.Gatherer != nil {
		metrics := promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})
		if cfg.Access.MetricsAuth {
			metrics = s.requireAdmin(metrics)
		}
		r.Handle("/metrics", metrics)
	}
	// The REST API. Its timeout applies to these routes only: the
	// WebSocket endpoint lives outside any request timeout.
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(s.timeout)
		r.NotFound(func(w http.ResponseWriter, r *http.Request) {
			s.writeError(w, r, errorf(http.StatusNotFound, "route_not_found", "no such API route: "+r.Method+" "+r.URL.Path))
		})
		r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", strings.Join(s.allowedMethods(r), ", "))
			s.writeError(w, r, errorf(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path))
		})
		r.Get("/openapi.json", s.openapi)
		r.Group(func(r chi.Router) {
			r.Use(s.requireAdmin)
			s.mountDocs(r)
			s.mountAccess(r)
			s.mountWebhooks(r)
		})
	})
	// Upgrades are accepted on any path, like the official server.
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			s.serveWebSocket(w, r)
			return
		}
		http.NotFound(w, r)
	})
	s.router = r
	return s
}

// timeout bounds a REST request's context (it writes nothing itself, so it
// can never race a handler's response).
func (s *Server) timeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// allowedMethods lists the methods the router serves on r's path, for the
// Allow header that a 405 answer must carry.
func (s *Server) allowedMethods(r *http.Request) []string {
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if s.router.Match(chi.NewRouteContext(), m, path) {
			out = append(out, m)
		}
	}
	return out
}

// Router returns the chi router, for tests that walk its routes.
func (s *Server) Router() chi.Router { return s.router }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// SetDraining marks the server as shutting down: /readyz fails and new
// WebSocket connections are refused.
func (s *Server) SetDraining() { s.draining.Store(true) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "draining")
		return
	}
	if !s.rooms.StoreHealthy() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "store unavailable")
		return
	}
	if s.cfg.StorePing != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.StorePing(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "store unavailable")
			return
		}
	}
	fmt.Fprintln(w, "ready")
}

func headerHas(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
