package api

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
)

// webDist is the demo's build (clients/js: npm run build:demo), committed so
// that the binary needs no Node; scripts/check-demo-build.sh fails when it
// differs from its sources.
//
//go:embed web/dist
var webDist embed.FS

// webAsset is one embedded file, with its validator and, for the large
// ones, a gzip copy made on first request.
type webAsset struct {
	body        []byte
	contentType string
	etag        string
	gzipOnce    sync.Once
	gzipped     []byte
}

// webUI serves the demo: the page at /, /d/<documentId> and /admin, its
// assets under /assets/ (and the icon at /favicon.ico), and /config.json,
// which tells the page what the server asks of clients.
type webUI struct {
	s      *Server
	index  *webAsset
	assets map[string]*webAsset
}

// webConfig is GET /config.json.
type webConfig struct {
	Version string `json:"version"`
	// Tokens: access tokens are configured.
	Tokens bool `json:"tokens"`
	// Anonymous: clients without a token get in.
	Anonymous bool `json:"anonymous"`
	// AdminAuth: the REST API needs the admin key or an admin token.
	AdminAuth bool `json:"admin_auth"`
	// Metrics: /metrics is served.
	Metrics bool `json:"metrics"`
	// Webhooks: the webhook delivery log is served.
	Webhooks bool `json:"webhooks"`
}

// contentSecurityPolicy keeps the demo to its own origin: its scripts, its
// WebSocket and REST calls, and the WebAssembly of the Automerge core.
const contentSecurityPolicy = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; " +
	"style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// mountWeb adds the demo's routes. A WebSocket upgrade on any of them is
// still a sync connection, as on every other path.
func (s *Server) mountWeb(r chi.Router) {
	ui := &webUI{s: s, assets: map[string]*webAsset{}}
	dist, err := fs.Sub(webDist, "web/dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	_ = fs.WalkDir(dist, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(dist, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		a := &webAsset{body: body, contentType: webContentType(p), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		if p == "index.html" {
			ui.index = a
		} else {
			ui.assets[p] = a
		}
		return nil
	})
	if ui.index == nil {
		panic("api: the embedded demo has no index.html (run npm run build:demo in clients/js)")
	}
	page := ui.upgradeOr(ui.page)
	r.Get("/", page)
	r.Get("/d/{id}", page)
	r.Get("/admin", page)
	r.Get("/admin/*", page)
	r.Get("/assets/{file}", ui.upgradeOr(ui.asset))
	r.Get("/config.json", ui.upgradeOr(ui.config))
	r.Get("/favicon.ico", ui.upgradeOr(ui.favicon)) // browsers ask for it on every page, /healthz too
}

func webContentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".wasm":
		return "application/wasm"
	case ".svg":
		return "image/svg+xml"
	case ".txt":
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// upgradeOr hands WebSocket upgrades to the sync endpoint.
func (ui *webUI) upgradeOr(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if isUpgrade(r) {
			ui.s.serveWebSocket(w, r)
			return
		}
		h(w, r)
	}
}

func (ui *webUI) page(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	ui.serve(w, r, "index.html", ui.index)
}

func (ui *webUI) asset(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "file")
	a, ok := ui.assets[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ui.serve(w, r, name, a)
}

func (ui *webUI) favicon(w http.ResponseWriter, r *http.Request) {
	a, ok := ui.assets["favicon.svg"]
	if !ok {
		http.NotFound(w, r)
		return
	}
	ui.serve(w, r, "favicon.svg", a)
}

func (ui *webUI) config(w http.ResponseWriter, _ *http.Request) {
	a := ui.s.cfg.Access
	version := ui.s.cfg.Version
	if version == "" {
		version = "dev"
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, webConfig{
		Version:   version,
		Tokens:    a.Verifier != nil,
		Anonymous: a.Verifier == nil || a.AllowAnonymous,
		AdminAuth: a.secured(),
		Metrics:   ui.s.cfg.Gatherer != nil,
		Webhooks:  ui.s.cfg.Outbox != nil,
	})
}

// serve answers with an embedded file: revalidated on every use (no-cache
// with an ETag), gzip-compressed for clients that accept it when that
// saves much.
func (ui *webUI) serve(w http.ResponseWriter, r *http.Request, name string, a *webAsset) {
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Add("Vary", "Accept-Encoding")
	body := a.body
	if len(body) > 1<<10 && headerHas(r.Header, "Accept-Encoding", "gzip") {
		if gz := a.gzip(); len(gz) < len(body)*9/10 {
			body = gz
			h.Set("Content-Encoding", "gzip")
			h.Set("ETag", strings.TrimSuffix(a.etag, `"`)+`-gzip"`)
		}
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}

func (a *webAsset) gzip() []byte {
	a.gzipOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(a.body)
		if zw.Close() == nil {
			a.gzipped = buf.Bytes()
		}
	})
	return a.gzipped
}
