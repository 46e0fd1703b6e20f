package api_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/api/docjson"
	"github.com/tandem-sync/tandem/internal/paging"
	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

const api1 = "/api/v1/docs/"

func TestCreateAndRead(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		c := e.create(t, `{"title": {"$text": "hello"}, "n": {"$counter": 5}, "tags": ["a", "b"],
			"nested": {"x": 1.5, "ok": true, "nil": null}, "big": 9007199254740993}`)
		e.wantContent(t, c.ID, `{"title": "hello", "n": 5, "tags": ["a", "b"],
			"nested": {"x": 1.5, "ok": true, "nil": null}, "big": 9007199254740993}`)

		m := e.meta(t, c.ID)
		if m.ID != c.ID || m.URL != c.URL || !reflect.DeepEqual(m.Heads, c.Heads) {
			t.Fatalf("metadata %+v does not describe the created doc %+v", m, c)
		}
		if m.SizeBytes <= 0 || m.ChangeCount < 1 || m.SnapshotBytes < 0 || m.SnapshotBytes > m.SizeBytes {
			t.Fatalf("metadata sizes %+v", m)
		}
		if m.CreatedAt.IsZero() || m.UpdatedAt.Before(m.CreatedAt) || m.LivePeers == nil || len(m.LivePeers) != 0 {
			t.Fatalf("metadata times or peers %+v", m)
		}

		// No body: an empty document that still exists.
		empty := e.create(t, "")
		e.wantContent(t, empty.ID, `{}`)
		if m := e.meta(t, empty.ID); !reflect.DeepEqual(m.Heads, empty.Heads) {
			t.Fatalf("empty doc metadata %+v, created %+v", m, empty)
		}

		// The automerge: URL form of the ID is accepted too.
		var v any
		e.do(t, "GET", api1+c.URL+"/content", nil, "").want(t, http.StatusOK, &v)
		if !reflect.DeepEqual(v, e.content(t, c.ID)) {
			t.Fatalf("content by URL %v", v)
		}

		// Metadata follows an edit.
		ch := e.change(t, c.ID, `[{"op": "set", "path": ["tags", 0], "value": "z"}]`, "edit")
		m2 := e.meta(t, c.ID)
		if !reflect.DeepEqual(m2.Heads, []string{ch.Hash}) || m2.ChangeCount <= m.ChangeCount ||
			m2.SizeBytes <= m.SizeBytes || m2.UpdatedAt.Before(m.UpdatedAt) || !m2.CreatedAt.Equal(m.CreatedAt) {
			t.Fatalf("metadata after an edit %+v, before %+v", m2, m)
		}
	})
}

func TestChangesAndHistory(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		c := e.create(t, `{"todos": [], "title": {"$text": "Buy milk"}, "views": {"$counter": 0}, "gone": 1}`)
		ch1 := e.change(t, c.ID, `[
			{"op": "insert", "path": ["todos"], "value": {"done": false, "what": "eggs"}},
			{"op": "insert", "path": ["todos"], "index": 0, "value": {"done": true, "what": "milk"}},
			{"op": "set", "path": ["todos", 1, "done"], "value": true},
			{"op": "splice", "path": ["title"], "index": 4, "delete": 4, "text": "eggs"},
			{"op": "increment", "path": ["views"], "value": 3},
			{"op": "delete", "path": ["gone"]}
		]`, "second")
		if ch1.Hash == c.Heads[0] {
			t.Fatal("an edit did not change the heads")
		}
		e.wantContent(t, c.ID, `{"todos": [{"done": true, "what": "milk"}, {"done": true, "what": "eggs"}],
			"title": "Buy eggs", "views": 3}`)
		ch2 := e.change(t, c.ID, `[{"op": "delete", "path": ["todos", 0]}, {"op": "increment", "path": ["views"], "value": -1}]`, "third")
		e.wantContent(t, c.ID, `{"todos": [{"done": true, "what": "eggs"}], "title": "Buy eggs", "views": 2}`)

		var h history
		e.do(t, "GET", api1+string(c.ID)+"/history", nil, "").want(t, http.StatusOK, &h)
		if h.Total != 3 || len(h.Changes) != 3 || h.NextCursor != "" {
			t.Fatalf("history %+v", h)
		}
		if m := e.meta(t, c.ID); m.ChangeCount != 3 {
			t.Fatalf("change_count %d, want 3", m.ChangeCount)
		}
		wantHashes := []string{c.Heads[0], ch1.Hash, ch2.Hash}
		wantMsgs := []string{"create", "second", "third"}
		for i, ci := range h.Changes {
			if ci.Hash != wantHashes[i] || ci.Message != wantMsgs[i] || ci.Seq != uint64(i+1) || ci.Time.IsZero() || ci.Actor == "" {
				t.Fatalf("history[%d] = %+v, want hash %s message %q", i, ci, wantHashes[i], wantMsgs[i])
			}
			wantDeps := []string{}
			if i > 0 {
				wantDeps = []string{wantHashes[i-1]}
			}
			if !reflect.DeepEqual(ci.Deps, wantDeps) {
				t.Fatalf("history[%d].deps = %v, want %v", i, ci.Deps, wantDeps)
			}
		}

		// Paging through the history.
		var p1, p2 history
		e.do(t, "GET", api1+string(c.ID)+"/history?limit=2", nil, "").want(t, http.StatusOK, &p1)
		if len(p1.Changes) != 2 || p1.NextCursor == "" || p1.Total != 3 || p1.Changes[1].Hash != ch1.Hash {
			t.Fatalf("history page 1 %+v", p1)
		}
		e.do(t, "GET", api1+string(c.ID)+"/history?limit=2&cursor="+p1.NextCursor, nil, "").want(t, http.StatusOK, &p2)
		if len(p2.Changes) != 1 || p2.NextCursor != "" || p2.Changes[0].Hash != ch2.Hash {
			t.Fatalf("history page 2 %+v", p2)
		}
		var past history
		e.do(t, "GET", api1+string(c.ID)+"/history?cursor=99", nil, "").want(t, http.StatusOK, &past)
		if len(past.Changes) != 0 || past.Changes == nil || past.Total != 3 {
			t.Fatalf("history past the end %+v", past)
		}
		for _, q := range []string{"cursor=-1", "cursor=x", "limit=0", "limit=1001", "limit=two"} {
			code := "invalid_" + strings.SplitN(q, "=", 2)[0]
			e.do(t, "GET", api1+string(c.ID)+"/history?"+q, nil, "").wantError(t, http.StatusBadRequest, code)
		}
	})
}

func TestContentAtHeadsAndFork(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		c := e.create(t, `{"v": 1, "list": [1]}`)
		ch := e.change(t, c.ID, `[{"op": "set", "path": ["v"], "value": 2}, {"op": "insert", "path": ["list"], "value": 2}]`, "v2")

		var old any
		e.do(t, "GET", api1+string(c.ID)+"/content?heads="+c.Heads[0], nil, "").want(t, http.StatusOK, &old)
		if !reflect.DeepEqual(old, jsonValue(t, `{"v": 1, "list": [1]}`)) {
			t.Fatalf("content at the creation heads = %v", old)
		}
		var now any
		e.do(t, "GET", api1+string(c.ID)+"/content?heads="+ch.Hash, nil, "").want(t, http.StatusOK, &now)
		if !reflect.DeepEqual(now, jsonValue(t, `{"v": 2, "list": [1, 2]}`)) {
			t.Fatalf("content at the latest heads = %v", now)
		}

		// Fork at the old heads: the old content, with the old history.
		var f created
		e.do(t, "POST", api1+string(c.ID)+"/fork", []byte(`{"heads": ["`+c.Heads[0]+`"]}`), "").want(t, http.StatusCreated, &f)
		if f.ID == c.ID || f.ForkedFrom != c.ID || f.URL != "automerge:"+string(f.ID) || !reflect.DeepEqual(f.Heads, c.Heads) {
			t.Fatalf("fork answered %+v", f)
		}
		e.wantContent(t, f.ID, `{"v": 1, "list": [1]}`)
		var fh history
		e.do(t, "GET", api1+string(f.ID)+"/history", nil, "").want(t, http.StatusOK, &fh)
		if fh.Total != 1 || fh.Changes[0].Hash != c.Heads[0] {
			t.Fatalf("fork's history %+v", fh)
		}
		// The fork is a document of its own.
		e.change(t, f.ID, `[{"op": "set", "path": ["v"], "value": 10}]`, "fork edit")
		e.wantContent(t, f.ID, `{"v": 10, "list": [1]}`)
		e.wantContent(t, c.ID, `{"v": 2, "list": [1, 2]}`)

		// Fork without a body, and with no heads: the current state.
		for _, body := range [][]byte{nil, []byte(`{}`), []byte(`{"heads": []}`)} {
			var cur created
			e.do(t, "POST", api1+string(c.ID)+"/fork", body, "").want(t, http.StatusCreated, &cur)
			if !reflect.DeepEqual(cur.Heads, []string{ch.Hash}) {
				t.Fatalf("fork of the current state (body %q) has heads %v, want %v", body, cur.Heads, ch.Hash)
			}
			e.wantContent(t, cur.ID, `{"v": 2, "list": [1, 2]}`)
		}
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 5 {
			t.Fatalf("listing after 4 forks has %d docs, want 5", len(l.Docs))
		}
	})
}

func TestBinaryExportAndImport(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		c := e.create(t, `{"title": {"$text": "hi"}, "n": 1}`)
		ch := e.change(t, c.ID, `[{"op": "splice", "path": ["title"], "index": 2, "text": " there"}]`, "more")

		// Export.
		r := e.do(t, "GET", api1+string(c.ID)+"/binary", nil, "")
		r.want(t, http.StatusOK, nil)
		if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Fatalf("binary Content-Type %q", ct)
		}
		if !strings.Contains(r.header.Get("Content-Disposition"), string(c.ID)+".automerge") {
			t.Fatalf("binary Content-Disposition %q", r.header.Get("Content-Disposition"))
		}
		doc, err := automerge.Load(r.body)
		if err != nil {
			t.Fatalf("exported binary does not load: %v", err)
		}
		if got := docjson.FormatHeads(doc.Heads()); !reflect.DeepEqual(got, []string{ch.Hash}) {
			t.Fatalf("exported heads %v, want %v", got, ch.Hash)
		}
		if s, err := doc.Path("title").Text().Get(); err != nil || s != "hi there" {
			t.Fatalf("exported title %q, %v", s, err)
		}

		// Import a document made with automerge-go under a new ID: created.
		local := automerge.New()
		if err := local.Path("from").Set("go"); err != nil {
			t.Fatal(err)
		}
		if err := local.Path("list").Set([]any{1, 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := local.Commit("made in go"); err != nil {
			t.Fatal(err)
		}
		id := wire.NewDocID()
		var imp created
		e.do(t, "PUT", api1+string(id)+"/binary", local.Save(), "application/octet-stream").want(t, http.StatusCreated, &imp)
		if imp.ID != id || !reflect.DeepEqual(imp.Heads, docjson.FormatHeads(local.Heads())) {
			t.Fatalf("import answered %+v, want heads %v", imp, docjson.FormatHeads(local.Heads()))
		}
		e.wantContent(t, id, `{"from": "go", "list": [1, 2]}`)

		// Concurrent edits on both sides, then import again: merged.
		rest := e.change(t, id, `[{"op": "set", "path": ["server"], "value": true}]`, "rest")
		if err := local.Path("from").Set("go, again"); err != nil {
			t.Fatal(err)
		}
		localHead, err := local.Commit("local edit")
		if err != nil {
			t.Fatal(err)
		}
		var merged created
		e.do(t, "PUT", api1+string(id)+"/binary", local.Save(), "application/octet-stream").want(t, http.StatusOK, &merged)
		want := []string{rest.Hash, localHead.String()}
		slices.Sort(want)
		got := slices.Sorted(slices.Values(merged.Heads))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("merged heads %v, want %v", got, want)
		}
		e.wantContent(t, id, `{"from": "go, again", "list": [1, 2], "server": true}`)
		if m := e.meta(t, id); !reflect.DeepEqual(slices.Sorted(slices.Values(m.Heads)), want) {
			t.Fatalf("metadata heads after merge %v", m.Heads)
		}
		// Importing what the server already has changes nothing.
		var same created
		e.do(t, "PUT", api1+string(id)+"/binary", local.Save(), "application/octet-stream").want(t, http.StatusOK, &same)
		if !reflect.DeepEqual(slices.Sorted(slices.Values(same.Heads)), want) {
			t.Fatalf("re-import heads %v", same.Heads)
		}
		// A single change chunk is accepted as an import too.
		if err := local.Path("n").Set(7); err != nil {
			t.Fatal(err)
		}
		h, err := local.Commit("one change")
		if err != nil {
			t.Fatal(err)
		}
		chg, err := local.Change(h)
		if err != nil {
			t.Fatal(err)
		}
		e.do(t, "PUT", api1+string(id)+"/binary", chg.Save(), "application/octet-stream").want(t, http.StatusOK, &same)
		e.wantContent(t, id, `{"from": "go, again", "list": [1, 2], "server": true, "n": 7}`)
		// So is an incremental save of several changes.
		local.SaveIncremental()
		for i := range 3 {
			if err := local.Path("n").Set(8 + i); err != nil {
				t.Fatal(err)
			}
			if _, err := local.Commit("incremental"); err != nil {
				t.Fatal(err)
			}
		}
		inc := local.SaveIncremental()
		e.do(t, "PUT", api1+string(id)+"/binary", inc, "application/octet-stream").want(t, http.StatusOK, &same)
		want = append(docjson.FormatHeads(local.Heads()), rest.Hash) // local never pulled the REST change
		slices.Sort(want)
		if got := slices.Sorted(slices.Values(same.Heads)); !reflect.DeepEqual(got, want) {
			t.Fatalf("heads after an incremental import %v, want %v", got, want)
		}
		e.wantContent(t, id, `{"from": "go, again", "list": [1, 2], "server": true, "n": 10}`)
		var ih history
		e.do(t, "GET", api1+string(id)+"/history", nil, "").want(t, http.StatusOK, &ih)
		if m := e.meta(t, id); ih.Total != 7 || m.ChangeCount != 7 {
			t.Fatalf("history has %d changes and change_count is %d, want 7", ih.Total, m.ChangeCount)
		}

		// An incremental save that depends on changes the server lacks,
		// and an empty document, create nothing.
		e.do(t, "PUT", api1+string(wire.NewDocID())+"/binary", inc, "application/octet-stream").
			wantError(t, http.StatusBadRequest, "invalid_binary")
		e.do(t, "PUT", api1+string(wire.NewDocID())+"/binary", automerge.New().Save(), "application/octet-stream").
			wantError(t, http.StatusBadRequest, "invalid_binary")
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 2 {
			t.Fatalf("failed imports created documents: %s", mustJSON(t, l))
		}
	})
}

func TestListPagination(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		var empty listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &empty)
		if empty.Docs == nil || len(empty.Docs) != 0 || empty.NextCursor != nil {
			t.Fatalf("empty listing %s", mustJSON(t, empty))
		}

		want := map[wire.DocID]bool{}
		for i := range 25 {
			want[e.create(t, fmt.Sprintf(`{"i": %d}`, i)).ID] = true
		}
		seen := map[wire.DocID]int{}
		var order []wire.DocID
		path := "/api/v1/docs?limit=10"
		pages := 0
		for {
			var l listing
			e.do(t, "GET", path, nil, "").want(t, http.StatusOK, &l)
			pages++
			if pages > 3 {
				t.Fatal("more than 3 pages of 10 for 25 documents")
			}
			wantLen := 10
			if pages == 3 {
				wantLen = 5
			}
			if len(l.Docs) != wantLen {
				t.Fatalf("page %d has %d docs, want %d", pages, len(l.Docs), wantLen)
			}
			for _, d := range l.Docs {
				seen[d.ID]++
				order = append(order, d.ID)
				if d.URL != "automerge:"+string(d.ID) {
					t.Fatalf("listed %+v", d)
				}
			}
			if l.NextCursor == nil {
				break
			}
			if *l.NextCursor == "" {
				t.Fatal("next_cursor present but empty")
			}
			path = "/api/v1/docs?limit=10&cursor=" + *l.NextCursor
		}
		if pages != 3 {
			t.Fatalf("%d pages, want 3", pages)
		}
		for id := range want {
			if seen[id] != 1 {
				t.Fatalf("document %s listed %d times", id, seen[id])
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("listed %d documents, created %d", len(seen), len(want))
		}
		if !slices.IsSorted(order) {
			t.Fatal("listing is not in ID order")
		}
		// The default page holds them all.
		var all listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &all)
		if len(all.Docs) != 25 || all.NextCursor != nil {
			t.Fatalf("default listing has %d docs, next_cursor %v", len(all.Docs), all.NextCursor)
		}
		// A page that ends exactly at the last document has no next cursor.
		var exact listing
		e.do(t, "GET", "/api/v1/docs?limit=25", nil, "").want(t, http.StatusOK, &exact)
		if len(exact.Docs) != 25 || exact.NextCursor != nil {
			t.Fatalf("limit=25 of 25: %d docs, next_cursor %v", len(exact.Docs), exact.NextCursor)
		}

		for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "limit=1001", "limit=1.5"} {
			e.do(t, "GET", "/api/v1/docs?"+q, nil, "").wantError(t, http.StatusBadRequest, "invalid_limit")
		}
		for _, q := range []string{"cursor=abc0OIl", "cursor=" + strings.Repeat("z", 100), "cursor=" + string(order[0]) + "x"} {
			e.do(t, "GET", "/api/v1/docs?"+q, nil, "").wantError(t, http.StatusBadRequest, "invalid_cursor")
		}
	})
}

// TestListLargestPage checks that a page of the largest size still says
// when more documents follow.
func TestListLargestPage(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		// Seed the store directly: the listing reads only the catalog.
		src := automerge.New()
		if err := src.Path("x").Set(1); err != nil {
			t.Fatal(err)
		}
		h, err := src.Commit("seed")
		if err != nil {
			t.Fatal(err)
		}
		chg, err := src.Change(h)
		if err != nil {
			t.Fatal(err)
		}
		n := paging.MaxLimit + 1
		ids := make(chan wire.DocID, n)
		for range n {
			ids <- wire.NewDocID()
		}
		close(ids)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range 32 {
			wg.Go(func() {
				for id := range ids {
					if _, err := e.store.Append(context.Background(), id, []core.Change{{Hash: core.Hash(h), Data: chg.Save()}}); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var p1 listing
		e.do(t, "GET", fmt.Sprintf("/api/v1/docs?limit=%d", paging.MaxLimit), nil, "").want(t, http.StatusOK, &p1)
		if len(p1.Docs) != paging.MaxLimit || p1.NextCursor == nil {
			t.Fatalf("first page of %d: %d docs, next_cursor %v; want %d and a cursor", n, len(p1.Docs), p1.NextCursor, paging.MaxLimit)
		}
		var p2 listing
		e.do(t, "GET", fmt.Sprintf("/api/v1/docs?limit=%d&cursor=%s", paging.MaxLimit, *p1.NextCursor), nil, "").want(t, http.StatusOK, &p2)
		if len(p2.Docs) != 1 || p2.NextCursor != nil {
			t.Fatalf("second page: %d docs, next_cursor %v; want 1 and none", len(p2.Docs), p2.NextCursor)
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		ctx := testCtx(t)
		keep := e.create(t, `{"keep": true}`)
		c := e.create(t, `{"doomed": true}`)

		// A live peer in the document's room.
		p := dialPeer(t, ctx, e.ts.URL, "peer-delete", c.ID)
		p.request(ctx, hashes(t, c.Heads))
		testwait.For(t, testwait.Default, "the peer listed in live_peers", func() bool {
			return slices.Equal(e.meta(t, c.ID).LivePeers, []string{"peer-delete"})
		})

		e.do(t, "DELETE", api1+string(c.ID), nil, "").want(t, http.StatusNoContent, nil)
		m := p.syncUntil(ctx, "doc-unavailable", func(m wire.Message) bool { return m.Type == wire.TypeDocUnavailable })
		if m.DocumentID != c.ID || m.TargetID != "peer-delete" {
			t.Fatalf("doc-unavailable %+v", m)
		}

		for _, sub := range []string{"", "/content", "/binary", "/history"} {
			e.do(t, "GET", api1+string(c.ID)+sub, nil, "").wantError(t, http.StatusNotFound, "document_not_found")
		}
		e.do(t, "POST", api1+string(c.ID)+"/changes", []byte(`{"ops": [{"op": "set", "path": ["a"], "value": 1}]}`), "").
			wantError(t, http.StatusNotFound, "document_not_found")
		e.do(t, "POST", api1+string(c.ID)+"/fork", nil, "").wantError(t, http.StatusNotFound, "document_not_found")
		e.do(t, "DELETE", api1+string(c.ID), nil, "").wantError(t, http.StatusNotFound, "document_not_found")
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 1 || l.Docs[0].ID != keep.ID {
			t.Fatalf("listing after delete %s", mustJSON(t, l))
		}
		e.wantContent(t, keep.ID, `{"keep": true}`)
		if _, err := e.store.Stat(context.Background(), c.ID); err == nil {
			t.Fatal("the store still has the deleted document")
		}
	})
}

func TestLiveSyncWithWebSocketPeers(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		ctx := testCtx(t)
		c := e.create(t, `{"title": {"$text": "hello"}, "items": []}`)
		p := dialPeer(t, ctx, e.ts.URL, "peer-live", c.ID)
		p.request(ctx, hashes(t, c.Heads))
		if s, err := p.Doc.Path("title").Text().Get(); err != nil || s != "hello" {
			t.Fatalf("peer's title %q, %v", s, err)
		}

		// A REST edit reaches the peer.
		ch := e.change(t, c.ID, `[{"op": "splice", "path": ["title"], "index": 5, "text": ", world"}]`, "rest edit")
		want := hashes(t, []string{ch.Hash})[0]
		p.syncUntil(ctx, "the REST change", func(wire.Message) bool { return p.serverHas(want) && slices.Contains(p.Doc.Heads(), want) })
		if s, err := p.Doc.Path("title").Text().Get(); err != nil || s != "hello, world" {
			t.Fatalf("peer's title after the REST edit %q, %v", s, err)
		}

		// The peer's edit is in the next GET once the server stored it.
		// (Waiting for the server to advertise it to the peer instead can
		// hang: see TestReproUnadvertisedChange in the report.)
		if err := p.Doc.Path("items").List().Append("from peer"); err != nil {
			t.Fatal(err)
		}
		ph, err := p.Doc.Commit("peer edit")
		if err != nil {
			t.Fatal(err)
		}
		p.sendSync(ctx, wire.TypeSync)
		testwait.For(t, testwait.Default, "the server to store the peer's change", func() bool {
			p.drain(ctx)
			return slices.Contains(e.meta(t, c.ID).Heads, ph.String())
		})
		e.wantContent(t, c.ID, `{"title": "hello, world", "items": ["from peer"]}`)
		if m := e.meta(t, c.ID); !reflect.DeepEqual(m.Heads, []string{ph.String()}) {
			t.Fatalf("heads after the peer's edit %v, want %v", m.Heads, ph)
		}
		var h history
		e.do(t, "GET", api1+string(c.ID)+"/history", nil, "").want(t, http.StatusOK, &h)
		if h.Total != 3 || h.Changes[2].Message != "peer edit" {
			t.Fatalf("history after the peer's edit %s", mustJSON(t, h))
		}

		// A binary import reaches the peer too.
		other := automerge.New()
		if err := other.Path("imported").Set(true); err != nil {
			t.Fatal(err)
		}
		ih, err := other.Commit("imported")
		if err != nil {
			t.Fatal(err)
		}
		e.do(t, "PUT", api1+string(c.ID)+"/binary", other.Save(), "application/octet-stream").want(t, http.StatusOK, nil)
		p.syncUntil(ctx, "the imported change", func(wire.Message) bool { return slices.Contains(p.Doc.Heads(), ih) })
	})
}

// editCase is a request that must fail with status and code.
type editCase struct {
	name, method, path string
	body               []byte
	ctype              string
	status             int
	code               string
}

func TestErrorsLeaveDocumentsUnchanged(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		const content = `{"title": {"$text": "hello"}, "n": {"$counter": 1}, "list": [1, 2, 3], "s": "plain", "m": {"a": 1}}`
		c := e.create(t, content)
		id := string(c.ID)
		ops := func(ops string) []byte { return []byte(`{"ops": ` + ops + `, "message": "m"}`) }
		zero := strings.Repeat("0", 64)
		cases := []editCase{
			{"bad json", "POST", "/changes", []byte(`{"ops": [`), "", 400, "invalid_json"},
			{"not an object", "POST", "/changes", []byte(`[1]`), "", 400, "invalid_json"},
			{"two values", "POST", "/changes", []byte(`{"ops": []} {}`), "", 400, "invalid_json"},
			{"trailing bracket", "POST", "/changes", []byte(`{"ops": [{"op": "set", "path": ["s"], "value": "x"}]}]`), "", 400, "invalid_json"},
			{"trailing garbage", "POST", "/changes", []byte(`{"ops": [{"op": "set", "path": ["s"], "value": "x"}]} x`), "", 400, "invalid_json"},
			{"unknown field", "POST", "/changes", []byte(`{"ops": [{"op": "set", "path": ["x"], "value": 1}], "msg": "m"}`), "", 400, "invalid_json"},
			{"unknown op field", "POST", "/changes", ops(`[{"op": "set", "path": ["x"], "value": 1, "where": 1}]`), "", 400, "invalid_json"},
			{"empty body", "POST", "/changes", []byte{}, "", 400, "invalid_json"},
			{"no ops", "POST", "/changes", ops(`[]`), "", 400, "invalid_operation"},
			{"null ops", "POST", "/changes", []byte(`{"ops": null}`), "", 400, "invalid_operation"},
			{"unknown op", "POST", "/changes", ops(`[{"op": "frobnicate", "path": ["x"]}]`), "", 400, "invalid_operation"},
			{"set root", "POST", "/changes", ops(`[{"op": "set", "path": [], "value": 1}]`), "", 400, "invalid_operation"},
			{"superfluous field", "POST", "/changes", ops(`[{"op": "delete", "path": ["s"], "value": 1}]`), "", 400, "invalid_operation"},
			{"bad value", "POST", "/changes", ops(`[{"op": "set", "path": ["x"], "value": {"$counter": "one"}}]`), "", 400, "invalid_operation"},
			{"empty key", "POST", "/changes", ops(`[{"op": "set", "path": [""], "value": 1}]`), "", 400, "invalid_operation"},
			{"path not found", "POST", "/changes", ops(`[{"op": "set", "path": ["missing", "x"], "value": 1}]`), "", 422, "path_not_found"},
			{"delete missing key", "POST", "/changes", ops(`[{"op": "delete", "path": ["missing"]}]`), "", 422, "path_not_found"},
			{"index into map", "POST", "/changes", ops(`[{"op": "set", "path": ["m", 0], "value": 1}]`), "", 422, "wrong_type"},
			{"splice a str", "POST", "/changes", ops(`[{"op": "splice", "path": ["s"], "index": 0, "text": "x"}]`), "", 422, "wrong_type"},
			{"increment a list", "POST", "/changes", ops(`[{"op": "increment", "path": ["list"], "value": 1}]`), "", 422, "wrong_type"},
			{"insert into a map", "POST", "/changes", ops(`[{"op": "insert", "path": ["m"], "value": 1}]`), "", 422, "wrong_type"},
			{"insert past the end", "POST", "/changes", ops(`[{"op": "insert", "path": ["list"], "index": 4, "value": 1}]`), "", 422, "out_of_range"},
			{"set past the end", "POST", "/changes", ops(`[{"op": "set", "path": ["list", 3], "value": 1}]`), "", 422, "out_of_range"},
			{"splice past the end", "POST", "/changes", ops(`[{"op": "splice", "path": ["title"], "index": 3, "delete": 5}]`), "", 422, "out_of_range"},
			{"counter overflow", "POST", "/changes", ops(`[{"op": "increment", "path": ["n"], "value": 9223372036854775807}]`), "", 422, "out_of_range"},
			{"last op fails", "POST", "/changes", ops(`[{"op": "set", "path": ["s"], "value": "changed"},
				{"op": "insert", "path": ["list"], "index": 0, "value": 0},
				{"op": "splice", "path": ["title"], "index": 0, "text": "oh "},
				{"op": "delete", "path": ["nope"]}]`), "", 422, "path_not_found"},
			{"bad heads", "GET", "/content?heads=xyz", nil, "", 400, "invalid_heads"},
			{"bad heads list", "GET", "/content?heads=" + c.Heads[0] + ",,", nil, "", 400, "invalid_heads"},
			{"unknown heads", "GET", "/content?heads=" + zero, nil, "", 422, "unknown_heads"},
			{"fork bad json", "POST", "/fork", []byte(`{"heads": `), "", 400, "invalid_json"},
			{"fork unknown field", "POST", "/fork", []byte(`{"at": ["` + c.Heads[0] + `"]}`), "", 400, "invalid_json"},
			{"fork bad heads", "POST", "/fork", []byte(`{"heads": ["xyz"]}`), "", 400, "invalid_heads"},
			{"fork unknown heads", "POST", "/fork", []byte(`{"heads": ["` + zero + `"]}`), "", 422, "unknown_heads"},
			{"bad binary", "PUT", "/binary", []byte("not an automerge document"), "application/octet-stream", 400, "invalid_binary"},
			{"empty binary", "PUT", "/binary", []byte{}, "application/octet-stream", 400, "invalid_binary"},
			{"truncated binary", "PUT", "/binary", truncatedSave(t), "application/octet-stream", 400, "invalid_binary"},
			{"trailing bytes", "PUT", "/binary", append(savedDoc(t), "tail"...), "application/octet-stream", 400, "invalid_binary"},
			{"missing dependencies", "PUT", "/binary", danglingChanges(t), "application/octet-stream", 400, "invalid_binary"},
		}
		before := e.meta(t, c.ID)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				e.do(t, tc.method, api1+id+tc.path, tc.body, tc.ctype).wantError(t, tc.status, tc.code)
				if m := e.meta(t, c.ID); !reflect.DeepEqual(m.Heads, before.Heads) || m.ChangeCount != before.ChangeCount {
					t.Fatalf("a failed request changed the document: %+v, before %+v", m, before)
				}
				e.wantContent(t, c.ID, `{"title": "hello", "n": 1, "list": [1, 2, 3], "s": "plain", "m": {"a": 1}}`)
			})
		}
		// Bad content for a new document creates nothing: malformed JSON is
		// invalid_json, JSON that is not an object of valid keys is
		// invalid_operation.
		for _, body := range []string{`{"a": `, `{"a": 1} {"b": 2}`, `{"a": 1}]`, `{"a": 1} x`} {
			e.do(t, "POST", "/api/v1/docs", []byte(body), "").wantError(t, http.StatusBadRequest, "invalid_json")
		}
		for _, body := range []string{`[1, 2]`, `"text"`, `{"": 1}`, `null`} {
			e.do(t, "POST", "/api/v1/docs", []byte(body), "").wantError(t, http.StatusBadRequest, "invalid_operation")
		}
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 1 {
			t.Fatalf("failed creates left documents: %s", mustJSON(t, l))
		}
	})
}

func TestInvalidAndUnknownDocumentIDs(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		valid := e.create(t, `{"a": 1}`)
		bin := automerge.New()
		if err := bin.Path("a").Set(1); err != nil {
			t.Fatal(err)
		}
		if _, err := bin.Commit("x"); err != nil {
			t.Fatal(err)
		}
		changeBody := []byte(`{"ops": [{"op": "set", "path": ["a"], "value": 2}]}`)
		type route struct {
			method, sub string
			body        []byte
			ctype       string
		}
		routes := []route{
			{"GET", "", nil, ""},
			{"DELETE", "", nil, ""},
			{"GET", "/content", nil, ""},
			{"GET", "/binary", nil, ""},
			{"PUT", "/binary", bin.Save(), "application/octet-stream"},
			{"POST", "/changes", changeBody, ""},
			{"GET", "/history", nil, ""},
			{"POST", "/fork", nil, ""},
		}
		// "0", "O", "I" and "l" are not Base58; the last one has a bad checksum.
		badIDs := []string{"not-a-doc-id", "0OIl0OIl", "automerge:", strings.Repeat("2", 65),
			string(valid.ID[:len(valid.ID)-1]) + flip(valid.ID[len(valid.ID)-1])}
		for _, rt := range routes {
			for _, bad := range badIDs {
				e.do(t, rt.method, api1+bad+rt.sub, rt.body, rt.ctype).wantError(t, http.StatusBadRequest, "invalid_document_id")
			}
			if rt.method == "PUT" {
				continue // PUT binary creates a missing document
			}
			e.do(t, rt.method, api1+string(wire.NewDocID())+rt.sub, rt.body, rt.ctype).wantError(t, http.StatusNotFound, "document_not_found")
		}
		// Nothing was created by any of them.
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 1 || l.Docs[0].ID != valid.ID {
			t.Fatalf("listing %s", mustJSON(t, l))
		}
		e.wantContent(t, valid.ID, `{"a": 1}`)
	})
}

// flip returns another Base58 character than c.
func flip(c byte) string {
	if c == '2' {
		return "3"
	}
	return "2"
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{MaxBodyBytes: 256})
		c := e.create(t, `{"a": "small"}`)
		big := `"` + strings.Repeat("x", 300) + `"`
		bigDoc := automerge.New()
		noise := make([]byte, 400) // incompressible: a saved document compresses its columns
		if _, err := rand.Read(noise); err != nil {
			t.Fatal(err)
		}
		if err := bigDoc.Path("a").Set(noise); err != nil {
			t.Fatal(err)
		}
		if _, err := bigDoc.Commit("big"); err != nil {
			t.Fatal(err)
		}
		cases := []struct {
			method, path string
			body         []byte
			ctype        string
		}{
			{"POST", "/api/v1/docs", []byte(`{"a": ` + big + `}`), ""},
			{"POST", api1 + string(c.ID) + "/changes", []byte(`{"ops": [{"op": "set", "path": ["a"], "value": ` + big + `}]}`), ""},
			{"PUT", api1 + string(c.ID) + "/binary", bigDoc.Save(), "application/octet-stream"},
			{"PUT", api1 + string(wire.NewDocID()) + "/binary", bigDoc.Save(), "application/octet-stream"},
			{"POST", api1 + string(c.ID) + "/fork", []byte(`{"heads": ["` + strings.Repeat(c.Heads[0]+`", "`, 5) + c.Heads[0] + `"]}`), ""},
			{"POST", "/api/v1/tokens/revoke", []byte(`{"jti": "` + strings.Repeat("j", 300) + `"}`), ""},
		}
		for _, tc := range cases {
			if len(tc.body) <= 256 {
				t.Fatalf("test body for %s %s is only %d bytes", tc.method, tc.path, len(tc.body))
			}
			e.do(t, tc.method, tc.path, tc.body, tc.ctype).wantError(t, http.StatusRequestEntityTooLarge, "body_too_large")
		}
		e.wantContent(t, c.ID, `{"a": "small"}`)
		var l listing
		e.do(t, "GET", "/api/v1/docs", nil, "").want(t, http.StatusOK, &l)
		if len(l.Docs) != 1 {
			t.Fatalf("a rejected body created a document: %s", mustJSON(t, l))
		}
		// A body just under the limit still works.
		e.change(t, c.ID, `[{"op": "set", "path": ["a"], "value": "still fine"}]`, "")
	})
}

func TestUnknownRouteAndWrongMethod(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite, api.Config{})
	c := e.create(t, `{}`)
	id := string(c.ID)
	for _, p := range []string{"/api/v1", "/api/v1/", "/api/v1/nope", "/api/v1/docs/" + id + "/nope", "/api/v1/docs/" + id + "/content/x"} {
		e.do(t, "GET", p, nil, "").wantError(t, http.StatusNotFound, "route_not_found")
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"PATCH", "/api/v1/docs/" + id, "GET, DELETE"},
		{"PUT", "/api/v1/docs", "GET, POST"},
		{"DELETE", "/api/v1/docs", "GET, POST"},
		{"GET", "/api/v1/docs/" + id + "/changes", "POST"},
		{"POST", "/api/v1/docs/" + id + "/content", "GET"},
		{"DELETE", "/api/v1/docs/" + id + "/binary", "GET, PUT"},
		{"GET", "/api/v1/docs/" + id + "/fork", "POST"},
		{"POST", "/api/v1/openapi.json", "GET"},
	} {
		r := e.do(t, tc.method, tc.path, nil, "")
		r.wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := normAllow(r.header.Get("Allow")); got != normAllow(tc.allow) {
			t.Errorf("%s: Allow %q, want %q", r, r.header.Get("Allow"), tc.allow)
		}
	}
	// The document is untouched by all that.
	e.wantContent(t, c.ID, `{}`)
}

// normAllow sorts an Allow header's methods.
func normAllow(s string) string {
	var ms []string
	for m := range strings.SplitSeq(s, ",") {
		if m = strings.TrimSpace(m); m != "" {
			ms = append(ms, m)
		}
	}
	slices.Sort(ms)
	return strings.Join(ms, ",")
}

func hashes(t *testing.T, hs []string) []automerge.ChangeHash {
	t.Helper()
	out := make([]automerge.ChangeHash, len(hs))
	for i, s := range hs {
		h, err := automerge.NewChangeHash(s)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = h
	}
	return out
}

// TestImportThenSyncSameActor imports a document over REST and then keeps
// editing it over the WebSocket as the same actor: the room must accept the
// actor's next change.
func TestImportThenSyncSameActor(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		ctx := testCtx(t)
		c := e.create(t, `{"n": 0}`)
		// A first peer edits, so the room has checked a peer's changes.
		p1 := dialPeer(t, ctx, e.ts.URL, "peer-one", c.ID)
		p1.request(ctx, hashes(t, c.Heads))
		if err := p1.Doc.Path("one").Set(1); err != nil {
			t.Fatal(err)
		}
		h1, err := p1.Doc.Commit("one")
		if err != nil {
			t.Fatal(err)
		}
		p1.sendSync(ctx, wire.TypeSync)
		testwait.For(t, testwait.Default, "the first peer's change stored", func() bool {
			p1.drain(ctx)
			return slices.Contains(e.meta(t, c.ID).Heads, h1.String())
		})

		// A local copy edited offline and imported.
		r := e.do(t, "GET", api1+string(c.ID)+"/binary", nil, "")
		r.want(t, http.StatusOK, nil)
		local, err := automerge.Load(r.body)
		if err != nil {
			t.Fatal(err)
		}
		if err := local.Path("two").Set(2); err != nil {
			t.Fatal(err)
		}
		if _, err := local.Commit("offline"); err != nil {
			t.Fatal(err)
		}
		e.do(t, "PUT", api1+string(c.ID)+"/binary", local.Save(), "application/octet-stream").want(t, http.StatusOK, nil)

		// The same actor goes on over the WebSocket.
		if err := local.Path("three").Set(3); err != nil {
			t.Fatal(err)
		}
		h3, err := local.Commit("online")
		if err != nil {
			t.Fatal(err)
		}
		p2 := dialPeerWith(t, ctx, e.ts.URL, "peer-two", c.ID, local)
		p2.sendSync(ctx, wire.TypeSync)
		testwait.For(t, testwait.Default, "the second peer's change stored", func() bool {
			p2.drain(ctx)
			return slices.Contains(e.meta(t, c.ID).Heads, h3.String())
		})
		e.wantContent(t, c.ID, `{"n": 0, "one": 1, "two": 2, "three": 3}`)
	})
}

// savedDoc is a small saved document with content of its own.
func savedDoc(t *testing.T) []byte {
	t.Helper()
	d := automerge.New()
	if err := d.Path("other").Set(strings.Repeat("payload", 20)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit("c"); err != nil {
		t.Fatal(err)
	}
	return d.Save()
}

// truncatedSave is a saved document cut short.
func truncatedSave(t *testing.T) []byte {
	t.Helper()
	b := savedDoc(t)
	return b[:len(b)/2]
}

// danglingChanges is an incremental save whose first change depends on one
// that is not in it.
func danglingChanges(t *testing.T) []byte {
	t.Helper()
	d := automerge.New()
	for i := range 2 {
		if err := d.Path("x").Set(i); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Commit("c"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			d.SaveIncremental()
		}
	}
	return d.SaveIncremental()
}

// TestConcurrentEdits runs REST edits on one document from many clients at
// once: every one is applied exactly once.
func TestConcurrentEdits(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		c := e.create(t, `{"n": {"$counter": 0}, "log": []}`)
		const workers, each = 8, 5
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := range each {
					body := fmt.Sprintf(`{"ops": [{"op": "increment", "path": ["n"], "value": 1},
						{"op": "insert", "path": ["log"], "value": "%d-%d"}], "message": "w%d"}`, w, i, w)
					r := e.do(t, "POST", api1+string(c.ID)+"/changes", []byte(body), "")
					if r.status != http.StatusOK {
						t.Errorf("concurrent edit: %s", r)
					}
				}
			})
		}
		// Readers at the same time.
		for range 4 {
			wg.Go(func() {
				for range each {
					if r := e.do(t, "GET", api1+string(c.ID)+"/content", nil, ""); r.status != http.StatusOK {
						t.Errorf("concurrent read: %s", r)
					}
				}
			})
		}
		wg.Wait()
		content := e.content(t, c.ID).(map[string]any)
		if n := fmt.Sprint(content["n"]); n != fmt.Sprint(workers*each) {
			t.Fatalf("counter %s after %d increments", n, workers*each)
		}
		if l := content["log"].([]any); len(l) != workers*each {
			t.Fatalf("log has %d entries, want %d", len(l), workers*each)
		}
		var h history
		e.do(t, "GET", api1+string(c.ID)+"/history", nil, "").want(t, http.StatusOK, &h)
		if m := e.meta(t, c.ID); h.Total != workers*each+1 || m.ChangeCount != int64(h.Total) || len(m.Heads) != 1 {
			t.Fatalf("history has %d changes, change_count %d, heads %v", h.Total, m.ChangeCount, m.Heads)
		}
	})
}

// TestServiceRoutes checks the routes outside /api/v1 on each store.
func TestServiceRoutes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sk storeKind) {
		e := newEnv(t, sk.open, api.Config{})
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/"} {
			e.do(t, "GET", p, nil, "").want(t, http.StatusOK, nil)
		}
		// Outside /api/v1 an unknown path is a plain 404.
		if r := e.do(t, "GET", "/api/v2/docs", nil, ""); r.status != http.StatusNotFound {
			t.Fatalf("%s", r)
		}
	})
}

// TestForkWithStreamedBody sends fork's optional body without a length.
func TestForkWithStreamedBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite, api.Config{})
	c := e.create(t, `{"v": 1}`)
	for _, body := range []string{"", `{"heads": ["` + c.Heads[0] + `"]}`} {
		req, err := http.NewRequest("POST", e.ts.URL+api1+string(c.ID)+"/fork", io.NopCloser(strings.NewReader(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // chunked
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("fork with a streamed body %q: %d %s", body, resp.StatusCode, b)
		}
	}
}
