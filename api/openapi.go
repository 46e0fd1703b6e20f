package api

import (
	_ "embed"
	"net/http"
)

// openAPISpec is the OpenAPI 3 description of the REST API. A test checks
// that its paths and the router's routes are the same.
//
//go:embed openapi.json
var openAPISpec []byte

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPISpec)
}
