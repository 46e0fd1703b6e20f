package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/tandem-sync/tandem/api/docjson"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// apiError is an error with a stable code and an HTTP status, rendered as
// {"error": {"code": "...", "message": "..."}}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, message string) *apiError {
	return &apiError{status: status, code: code, message: message}
}

var (
	errDocNotFound = errorf(http.StatusNotFound, "document_not_found", "no such document")
	errBadBinary   = errorf(http.StatusBadRequest, "invalid_binary", "the body is not an Automerge document or change")
)

// toAPIError maps domain errors to HTTP statuses and stable codes. It is
// the only place that does.
func toAPIError(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "body_too_large", err.Error())
	case errors.Is(err, wire.ErrInvalidDocID):
		return errorf(http.StatusBadRequest, "invalid_document_id", err.Error())
	case errors.Is(err, room.ErrNotFound):
		return errDocNotFound
	case errors.Is(err, docjson.ErrBadOp):
		return errorf(http.StatusBadRequest, "invalid_operation", err.Error())
	case errors.Is(err, docjson.ErrPathNotFound):
		return errorf(http.StatusUnprocessableEntity, "path_not_found", err.Error())
	case errors.Is(err, docjson.ErrWrongType):
		return errorf(http.StatusUnprocessableEntity, "wrong_type", err.Error())
	case errors.Is(err, docjson.ErrOutOfRange):
		return errorf(http.StatusUnprocessableEntity, "out_of_range", err.Error())
	case errors.Is(err, docjson.ErrBadHeads):
		return errorf(http.StatusBadRequest, "invalid_heads", err.Error())
	case errors.Is(err, docjson.ErrUnknownHeads):
		return errorf(http.StatusUnprocessableEntity, "unknown_heads", err.Error())
	case errors.Is(err, room.ErrDeleted):
		return errorf(http.StatusConflict, "document_deleted", "the document was deleted before the change was stored")
	case errors.Is(err, room.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, "store_unavailable", "the document could not be loaded from the store; try again")
	case errors.Is(err, room.ErrClosed):
		return errorf(http.StatusServiceUnavailable, "shutting_down", "the server is shutting down")
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusServiceUnavailable, "timeout",
			"the operation did not complete in time (the store may be unavailable); a change already applied will still be stored and sent")
	}
	return errorf(http.StatusInternalServerError, "internal", "internal server error")
}

// writeError answers with err as JSON, logging unexpected ones.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
