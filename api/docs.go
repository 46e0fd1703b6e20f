package api

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/go-chi/chi/v5"

	"github.com/tandem-sync/tandem/api/docjson"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// Catalog is what the document API reads from the store directly, without
// loading documents: both docstore stores implement it.
type Catalog interface {
	Stat(ctx context.Context, id wire.DocID) (room.DocStat, error)
	List(ctx context.Context, after wire.DocID, limit int) ([]room.DocStat, error)
}

// docSummary is one document in listings and metadata.
type docSummary struct {
	ID            wire.DocID `json:"id"`
	URL           string     `json:"url"`
	SizeBytes     int64      `json:"size_bytes"`
	SnapshotBytes int64      `json:"snapshot_bytes"`
	ChangeCount   int64      `json:"change_count"`
	CreatedAt     time.Time  `json:"created_at"`
	UpdatedAt     time.Time  `json:"updated_at"`
}

func summary(st room.DocStat) docSummary {
	return docSummary{ID: st.ID, URL: st.ID.URL(), SizeBytes: st.Size, SnapshotBytes: st.SnapshotSize,
		ChangeCount: st.Changes, CreatedAt: st.CreatedAt.UTC(), UpdatedAt: st.UpdatedAt.UTC()}
}

func (s *Server) mountDocs(r chi.Router) {
	r.Post("/docs", s.createDoc)
	r.Get("/docs", s.listDocs)
	r.Get("/docs/{id}", s.getDoc)
	r.Delete("/docs/{id}", s.deleteDoc)
	r.Get("/docs/{id}/content", s.getContent)
	r.Get("/docs/{id}/binary", s.getBinary)
	r.Put("/docs/{id}/binary", s.putBinary)
	r.Post("/docs/{id}/changes", s.postChanges)
	r.Get("/docs/{id}/history", s.getHistory)
	r.Post("/docs/{id}/fork", s.forkDoc)
}

func docID(r *http.Request) (wire.DocID, error) {
	return wire.ParseDocID(chi.URLParam(r, "id"))
}

// readBody reads a request body up to the configured limit.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return b, nil
}

// decodeJSON strictly decodes a JSON body into v.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeStrict(b, v)
}

// decodeStrict decodes exactly one JSON value into v, refusing unknown
// fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "invalid_json", "request body: "+err.Error())
	}
	if rest := bytes.TrimSpace(b[dec.InputOffset():]); len(rest) > 0 {
		return errorf(http.StatusBadRequest, "invalid_json", "request body: more than one JSON value")
	}
	return nil
}

// read runs fn on an existing document in its room.
func (s *Server) read(ctx context.Context, id wire.DocID, fn func(doc *automerge.Doc) error) error {
	return s.rooms.Do(ctx, id, func(doc *core.Doc, exists bool) error {
		if !exists {
			return errDocNotFound
		}
		return fn(doc.Automerge())
	})
}

func (s *Server) createDoc(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(body) == 0 {
		body = []byte("{}")
	}
	if !json.Valid(body) {
		s.writeError(w, r, errorf(http.StatusBadRequest, "invalid_json", "request body is not valid JSON"))
		return
	}
	id := wire.NewDocID()
	var heads []automerge.ChangeHash
	err = s.rooms.Do(r.Context(), id, func(doc *core.Doc, _ bool) error {
		if _, err := docjson.SetRoot(doc.Automerge(), body, "create"); err != nil {
			return err
		}
		heads = doc.Automerge().Heads()
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": id, "url": id.URL(), "heads": docjson.FormatHeads(heads)})
}

func (s *Server) listDocs(w http.ResponseWriter, r *http.Request) {
	var after wire.DocID
	limit, err := pageQuery(r, func(c string) (err error) {
		after, err = wire.ParseDocID(c)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stats, err := s.cfg.Catalog.List(r.Context(), after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := struct {
		Docs       []docSummary `json:"docs"`
		NextCursor string       `json:"next_cursor,omitempty"`
	}{Docs: []docSummary{}}
	for i, st := range stats {
		if i == limit {
			resp.NextCursor = string(stats[i-1].ID)
			break
		}
		resp.Docs = append(resp.Docs, summary(st))
	}
	if len(stats) == limit {
		// Exactly a page: either nothing follows, or the store returned
		// fewer than asked (stores cap a page at paging.MaxLimit).
		more, err := s.cfg.Catalog.List(r.Context(), stats[limit-1].ID, 1)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if len(more) > 0 {
			resp.NextCursor = string(stats[limit-1].ID)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) getDoc(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var heads []string
	if err := s.read(r.Context(), id, func(doc *automerge.Doc) error {
		heads = docjson.FormatHeads(doc.Heads())
		return nil
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	st, err := s.cfg.Catalog.Stat(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	peers := []string{}
	for _, p := range s.rooms.Peers(id) {
		peers = append(peers, string(p.ID()))
	}
	writeJSON(w, http.StatusOK, struct {
		docSummary
		Heads     []string `json:"heads"`
		LivePeers []string `json:"live_peers"`
	}{summary(st), heads, peers})
}

func (s *Server) deleteDoc(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.cfg.Catalog.Stat(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.rooms.Delete(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) getContent(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var heads []automerge.ChangeHash
	if q := r.URL.Query().Get("heads"); q != "" {
		if heads, err = docjson.ParseHeads(q); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var content any
	err = s.read(r.Context(), id, func(doc *automerge.Doc) error {
		var err error
		if heads != nil {
			content, err = docjson.RenderAt(doc, heads)
		} else {
			content, err = docjson.Render(doc)
		}
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, content)
}

func (s *Server) getBinary(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var data []byte
	if err := s.read(r.Context(), id, func(doc *automerge.Doc) error {
		data = doc.Save()
		return nil
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", string(id)+".automerge"))
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	_, _ = w.Write(data)
}

func (s *Server) putBinary(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	created := false
	var heads []automerge.ChangeHash
	changeHashes, err := core.ChunkHashes(body)
	if err != nil {
		s.writeError(w, r, errBadBinary)
		return
	}
	err = s.rooms.Do(r.Context(), id, func(doc *core.Doc, exists bool) error {
		incoming, err := automerge.Load(body)
		if err != nil {
			// Not a document on its own: change chunks (an incremental
			// save) that build on this document's changes, loaded into a
			// copy of it.
			if incoming, err = doc.Automerge().Fork(); err != nil {
				return fmt.Errorf("import: fork: %w", err)
			}
			if err := incoming.LoadIncremental(body); err != nil {
				return fmt.Errorf("%w: %v", errBadBinary, err)
			}
			for _, h := range changeHashes {
				if _, err := incoming.Change(automerge.ChangeHash(h)); err != nil {
					return errorf(http.StatusBadRequest, "invalid_binary",
						"change "+hex.EncodeToString(h[:])+" depends on changes that neither the document nor the body holds")
				}
			}
		}
		if _, err := doc.Automerge().Merge(incoming); err != nil {
			return fmt.Errorf("%w: merge: %v", errBadBinary, err)
		}
		if !exists && doc.Empty() {
			return errorf(http.StatusBadRequest, "invalid_binary", "the body holds no changes, so there is no document to create")
		}
		created = !exists
		heads = doc.Automerge().Heads()
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, map[string]any{"id": id, "url": id.URL(), "heads": docjson.FormatHeads(heads)})
}

// changesRequest is the body of POST /docs/{id}/changes.
type changesRequest struct {
	Ops     []docjson.Op `json:"ops"`
	Message string       `json:"message"`
}

func (s *Server) postChanges(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req changesRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	var hash automerge.ChangeHash
	var heads []automerge.ChangeHash
	err = s.rooms.Do(r.Context(), id, func(doc *core.Doc, exists bool) error {
		if !exists {
			return errDocNotFound
		}
		h, err := docjson.Apply(doc.Automerge(), req.Ops, req.Message)
		hash, heads = h, doc.Automerge().Heads()
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"hash": hex.EncodeToString(hash[:]), "heads": docjson.FormatHeads(heads)})
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var offset int
	limit, err := pageQuery(r, func(c string) (err error) {
		offset, err = nonNegative(c)
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var all []docjson.ChangeInfo
	if err := s.read(r.Context(), id, func(doc *automerge.Doc) error {
		var err error
		all, err = docjson.History(doc)
		return err
	}); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := struct {
		Changes    []docjson.ChangeInfo `json:"changes"`
		Total      int                  `json:"total"`
		NextCursor string               `json:"next_cursor,omitempty"`
	}{Changes: []docjson.ChangeInfo{}, Total: len(all)}
	if offset < len(all) {
		end := min(offset+limit, len(all))
		resp.Changes = all[offset:end]
		if end < len(all) {
			resp.NextCursor = strconv.Itoa(end)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// forkRequest is the optional body of POST /docs/{id}/fork.
type forkRequest struct {
	Heads []string `json:"heads"`
}

func (s *Server) forkDoc(w http.ResponseWriter, r *http.Request) {
	id, err := docID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req forkRequest
	body, err := s.readBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(bytes.TrimSpace(body)) > 0 { // the body is optional, with or without a length
		if err := decodeStrict(body, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var heads []automerge.ChangeHash
	if len(req.Heads) > 0 {
		if heads, err = docjson.ParseHeads(strings.Join(req.Heads, ",")); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	var snapshot []byte
	err = s.read(r.Context(), id, func(doc *automerge.Doc) error {
		for _, h := range heads {
			if _, err := doc.Change(h); err != nil {
				return fmt.Errorf("%w: %s", docjson.ErrUnknownHeads, hex.EncodeToString(h[:]))
			}
		}
		forked, err := doc.Fork(heads...)
		if err != nil {
			return fmt.Errorf("fork: %w", err)
		}
		snapshot = forked.Save()
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	newID := wire.NewDocID()
	var newHeads []automerge.ChangeHash
	err = s.rooms.Do(r.Context(), newID, func(doc *core.Doc, _ bool) error {
		if err := doc.Automerge().LoadIncremental(snapshot); err != nil {
			return fmt.Errorf("fork: load: %w", err)
		}
		newHeads = doc.Automerge().Heads()
		return nil
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": newID, "url": newID.URL(), "forked_from": id, "heads": docjson.FormatHeads(newHeads)})
}
