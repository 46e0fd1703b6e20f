package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"

	"github.com/tandem-sync/tandem/docstore/storetest"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// repoDir is a hand-built data directory in the layout of automerge-repo's
// NodeFSStorageAdapter: the key [id, kind, name] is the file
// root/id[:2]/id[2:]/kind/name.
type repoDir string

func (r repoDir) put(t *testing.T, key, kind, name string, data []byte) {
	t.Helper()
	dir := filepath.Join(string(r), key[:2], key[2:], kind)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshot writes doc's snapshot named as automerge-repo names it (the
// SHA-256 of its hex heads).
func (r repoDir) snapshot(t *testing.T, id wire.DocID, doc *core.Doc) {
	h := sha256.New()
	for _, head := range doc.Heads() {
		h.Write([]byte(hex.EncodeToString(head[:])))
	}
	r.put(t, string(id), "snapshot", hex.EncodeToString(h.Sum(nil)), doc.Save())
}

// incremental writes change chunks as one incremental file, named by the
// SHA-256 of its bytes as automerge-repo names it.
func (r repoDir) incremental(t *testing.T, id wire.DocID, changes ...core.Change) {
	var data []byte
	for _, c := range changes {
		data = append(data, c.Data...)
	}
	sum := sha256.Sum256(data)
	r.put(t, string(id), "incremental", hex.EncodeToString(sum[:]), data)
}

// edit applies fn to doc and commits it as one change, which it returns.
func edit(t *testing.T, doc *core.Doc, fn func(root *automerge.Map) error) core.Change {
	t.Helper()
	before := doc.Heads()
	if err := fn(doc.Automerge().RootMap()); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.Automerge().Commit("edit"); err != nil {
		t.Fatal(err)
	}
	chs, err := doc.ChangesSince(before)
	if err != nil || len(chs) != 1 {
		t.Fatalf("edit made %d changes, err %v", len(chs), err)
	}
	return chs[0]
}

// withSeq returns the change chunk c with its seq replaced by seq, framed
// and checksummed as a valid chunk: a change that skips ahead of its
// actor's history, which the core loads but a peer may not send.
func withSeq(t *testing.T, c []byte, seq byte) []byte {
	t.Helper()
	uleb := func(b []byte) (uint64, int) {
		var v uint64
		for i, x := range b {
			v |= uint64(x&0x7f) << (7 * i)
			if x < 0x80 {
				return v, i + 1
			}
		}
		t.Fatal("bad LEB128")
		return 0, 0
	}
	n, ln := uleb(c[9:])
	data := slices.Clone(c[9+ln:])
	if uint64(len(data)) != n {
		t.Fatal("not one change chunk")
	}
	deps, i := uleb(data)
	i += 32 * int(deps)
	actor, l := uleb(data[i:])
	i += l + int(actor)
	if data[i] >= 0x80 {
		t.Fatal("seq over one byte")
	}
	data[i] = seq
	h := sha256.New()
	h.Write(c[8 : 9+ln]) // type and length
	h.Write(data)
	sum := h.Sum(nil)
	out := append(slices.Clone(c[:4]), sum[:4]...)
	out = append(out, c[8:9+ln]...)
	return append(out, data...)
}

// importFixture is a repoDir with documents of every kind the import
// meets, and what each good one must become.
type importFixture struct {
	dir     repoDir
	heads   map[wire.DocID][]core.Hash // the good documents' heads
	changes map[wire.DocID]int64       // and their changes
	refused []wire.DocID
	mapDoc  wire.DocID
	mapSrc  *core.Doc
}

func newImportFixture(t *testing.T) *importFixture {
	f := &importFixture{dir: repoDir(t.TempDir()), heads: map[wire.DocID][]core.Hash{}, changes: map[wire.DocID]int64{}}
	good := func(id wire.DocID, doc *core.Doc) {
		f.heads[id] = doc.Heads()
		chs, err := doc.ChangesSince(nil)
		if err != nil {
			t.Fatal(err)
		}
		f.changes[id] = int64(len(chs))
	}

	// A map with a list, saved once: a snapshot alone.
	f.mapDoc, f.mapSrc = wire.NewDocID(), core.NewDoc()
	edit(t, f.mapSrc, func(m *automerge.Map) error {
		if err := m.Set("title", "hello"); err != nil {
			return err
		}
		return m.Set("items", []any{int64(1), int64(2), int64(3)})
	})
	f.dir.snapshot(t, f.mapDoc, f.mapSrc)
	good(f.mapDoc, f.mapSrc)

	// Text with a long history: a snapshot of its first 1101 changes, then
	// incrementals of one or two changes each, as a busy server saves them.
	long, longDoc := wire.NewDocID(), core.NewDoc()
	edit(t, longDoc, func(m *automerge.Map) error { return m.Set("text", automerge.NewText("")) })
	for i := range 1100 { // more than one sync message of changes (importBatchChanges)
		edit(t, longDoc, func(m *automerge.Map) error {
			v, _ := m.Get("text")
			return v.Text().Append(strconv.Itoa(i % 10))
		})
	}
	f.dir.snapshot(t, long, longDoc)
	for i := range 50 {
		var chs []core.Change
		for range 1 + i%2 {
			chs = append(chs, edit(t, longDoc, func(m *automerge.Map) error {
				v, _ := m.Get("text")
				return v.Text().Append("x")
			}))
		}
		f.dir.incremental(t, long, chs...)
	}
	good(long, longDoc)

	// Two actors editing concurrently: two heads, a snapshot of the merge
	// and an incremental of one side's later edit.
	two, a := wire.NewDocID(), core.NewDoc()
	edit(t, a, func(m *automerge.Map) error { return m.Set("n", int64(0)) })
	bDoc, err := a.Automerge().Fork()
	if err != nil {
		t.Fatal(err)
	}
	b, err := core.Load(bDoc.Save(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Automerge().SetActorID("b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"); err != nil {
		t.Fatal(err)
	}
	edit(t, a, func(m *automerge.Map) error { return m.Set("a", "from a") })
	edit(t, b, func(m *automerge.Map) error { return m.Set("b", "from b") })
	if _, err := a.Automerge().Merge(b.Automerge()); err != nil {
		t.Fatal(err)
	}
	f.dir.snapshot(t, two, a)
	f.dir.incremental(t, two, edit(t, a, func(m *automerge.Map) error { return m.Set("n", int64(1)) }))
	f.dir.incremental(t, two, edit(t, b, func(m *automerge.Map) error { return m.Set("n", int64(2)) }))
	if _, err := a.Automerge().Merge(b.Automerge()); err != nil {
		t.Fatal(err)
	}
	if len(a.Heads()) != 2 {
		t.Fatalf("two-actor document has %d heads, want 2", len(a.Heads()))
	}
	good(two, a)

	// What the adapter keeps besides documents: its storage ID, sync
	// states, another namespace's keys.
	if err := os.MkdirAll(filepath.Join(string(f.dir), "st"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(string(f.dir), "st", "orage-adapter-id"), []byte("d734cf36-44f6-4d96-911d-bef5e70c0000"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.dir.put(t, string(f.mapDoc), "sync-state", "d734cf36-44f6-4d96-911d-bef5e70c0000", []byte{0x43, 0})
	f.dir.put(t, "LocalFirstAuthProvider", "team", "graph", []byte("not a document"))

	// Refused: a snapshot that is not Automerge, a truncated incremental
	// (a write cut short), and a change whose seq skips ahead.
	garbage := wire.NewDocID()
	f.dir.put(t, string(garbage), "snapshot", "0000", []byte("this is not an automerge document"))
	truncated, tdoc := wire.NewDocID(), core.NewDoc()
	edit(t, tdoc, func(m *automerge.Map) error { return m.Set("k", "v") })
	f.dir.snapshot(t, truncated, tdoc)
	c := edit(t, tdoc, func(m *automerge.Map) error { return m.Set("k", "w") })
	f.dir.put(t, string(truncated), "incremental", "cut", c.Data[:len(c.Data)-3])
	skips, sdoc := wire.NewDocID(), core.NewDoc()
	edit(t, sdoc, func(m *automerge.Map) error { return m.Set("k", int64(1)) })
	f.dir.snapshot(t, skips, sdoc)
	c = edit(t, sdoc, func(m *automerge.Map) error { return m.Set("k", int64(2)) })
	f.dir.incremental(t, skips, core.Change{Data: withSeq(t, c.Data, 3)})
	f.refused = []wire.DocID{garbage, truncated, skips}
	slices.Sort(f.refused)
	return f
}

var importSummaryRE = regexp.MustCompile(`^imported (\d+) documents \((\d+) changes\), (\d+) unchanged, (\d+) refused; read \d+ chunk files \(\d+ bytes\) in \S+\n$`)

// runImport runs `tandem import` in-process and checks its summary line
// against the counts wanted, and that it failed exactly when refusing.
func runImport(t *testing.T, storeArgs []string, dir repoDir, imported, changes, unchanged, refused int) (stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	args := append([]string{"import", "--automerge-repo-dir", string(dir)}, storeArgs...)
	err := run(context.Background(), args, func(string) string { return "" }, &out, &errOut)
	m := importSummaryRE.FindStringSubmatch(out.String())
	want := []string{strconv.Itoa(imported), strconv.Itoa(changes), strconv.Itoa(unchanged), strconv.Itoa(refused)}
	if m == nil || !slices.Equal(m[1:], want) {
		t.Fatalf("tandem import printed %q, want counts %v (err %v, stderr:\n%s)", out.String(), want, err, errOut.String())
	}
	switch {
	case refused == 0 && err != nil:
		t.Fatalf("tandem import: %v\n%s", err, errOut.String())
	case refused > 0 && (err == nil || !strings.HasSuffix(err.Error(), "refused")):
		t.Fatalf("tandem import with %d refused returned %v", refused, err)
	}
	return errOut.String()
}

// TestImport imports a hand-built automerge-repo data directory into each
// store, checks every document the way a room will load it, and runs it
// again to see that nothing changes; then merges with documents that
// changed on either side since.
func TestImport(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		testImport(t, []string{"--data-dir", dir}, Config{DataDir: dir})
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		url := storetest.NewPostgresDatabase(t)
		testImport(t, []string{"--database-url", url}, Config{DatabaseURL: url})
	})
}

func testImport(t *testing.T, storeArgs []string, cfg Config) {
	ctx := context.Background()
	f := newImportFixture(t)
	var total int
	for _, n := range f.changes {
		total += int(n)
	}
	stderr := runImport(t, storeArgs, f.dir, len(f.heads), total, 0, len(f.refused))
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != len(f.refused) {
		t.Fatalf("stderr has %d lines, want one per refused document (%d):\n%s", len(lines), len(f.refused), stderr)
	}
	for i, id := range f.refused {
		if !strings.HasPrefix(lines[i], "refused "+string(id)+": ") || len(lines[i]) < len("refused : ")+len(id)+5 {
			t.Errorf("stderr line %d is %q, want the refusal of %s with its reason", i, lines[i], id)
		}
	}

	st, err := openStore(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	check := func(id wire.DocID, heads []core.Hash, changes int64) {
		t.Helper()
		sd, err := st.Load(ctx, id)
		if err != nil {
			t.Fatalf("load %s: %v", id, err)
		}
		// Compacted, with the snapshot's heads recorded, as a room leaves
		// a document it evicts.
		if len(sd.Changes) != 0 || !slices.Equal(sd.SnapshotHeads, heads) {
			t.Errorf("%s: %d logged changes and snapshot heads %x, want a snapshot with heads %x", id, len(sd.Changes), sd.SnapshotHeads, heads)
		}
		doc, err := core.Load(sd.Snapshot, sd.Changes)
		if err != nil || !slices.Equal(doc.Heads(), heads) {
			t.Errorf("%s loads with heads %x (err %v), want %x", id, doc.Heads(), err, heads)
		}
		stat, err := st.Stat(ctx, id)
		if err != nil || stat.Changes != changes {
			t.Errorf("%s: stat %+v (err %v), want %d changes", id, stat, err, changes)
		}
	}
	for id, heads := range f.heads {
		check(id, heads, f.changes[id])
	}
	for _, id := range f.refused {
		if _, err := st.Stat(ctx, id); err == nil {
			t.Errorf("refused document %s is in the store", id)
		}
	}
	sd, err := st.Load(ctx, f.mapDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := core.Load(sd.Snapshot, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := doc.Automerge().RootMap().Get("title"); err != nil || v.Str() != "hello" {
		t.Errorf("title is %v (err %v), want hello", v, err)
	}
	if v, err := doc.Automerge().Path("items", 2).Get(); err != nil || v.Int64() != 3 {
		t.Errorf("items[2] is %v (err %v), want 3", v, err)
	}

	// Twice: nothing changes, not even a document's update time.
	before := map[wire.DocID]int64{}
	for id := range f.heads {
		stat, err := st.Stat(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before[id] = stat.UpdatedAt.UnixNano()
	}
	runImport(t, storeArgs, f.dir, 0, 0, len(f.heads), len(f.refused))
	for id := range f.heads {
		check(id, f.heads[id], f.changes[id])
		if stat, _ := st.Stat(ctx, id); stat.UpdatedAt.UnixNano() != before[id] {
			t.Errorf("%s was written again by the second import", id)
		}
	}

	// The document changed in Tandem since (a client's edit): importing
	// again keeps it and adds nothing.
	tandemEdit := edit(t, doc, func(m *automerge.Map) error { return m.Set("title", "edited in tandem") })
	if _, err := st.Append(ctx, f.mapDoc, []core.Change{tandemEdit}); err != nil {
		t.Fatal(err)
	}
	runImport(t, storeArgs, f.dir, 0, 0, len(f.heads), len(f.refused))
	// And in the old server too: the import merges its new change in.
	f.dir.incremental(t, f.mapDoc, edit(t, f.mapSrc, func(m *automerge.Map) error { return m.Set("old", true) }))
	runImport(t, storeArgs, f.dir, 1, 1, len(f.heads)-1, len(f.refused))
	heads := append(doc.Heads(), f.mapSrc.Heads()...)
	slices.SortFunc(heads, func(a, b core.Hash) int { return bytes.Compare(a[:], b[:]) })
	check(f.mapDoc, heads, f.changes[f.mapDoc]+2)
}

func TestImportArguments(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"import", "--data-dir", data}, "tandem import: --automerge-repo-dir is required"},
		{[]string{"import", "--data-dir", data, "--automerge-repo-dir", filepath.Join(data, "missing")}, "tandem import: --automerge-repo-dir: stat"},
		{[]string{"import", "--data-dir", data, "--automerge-repo-dir", t.TempDir(), "extra"}, "tandem import: unexpected arguments"},
	} {
		err := run(context.Background(), tt.args, func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
			t.Errorf("run(%q) = %v, want %q", tt.args, err, tt.wantErr)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a failed import made its store: %v", err)
	}
	// An empty directory is an automerge-repo directory with no documents.
	var out bytes.Buffer
	env := func(k string) string {
		return map[string]string{"TANDEM_AUTOMERGE_REPO_DIR": t.TempDir(), "TANDEM_DATA_DIR": data}[k]
	}
	if err := run(context.Background(), []string{"import"}, env, &out, io.Discard); err != nil ||
		!strings.HasPrefix(out.String(), "imported 0 documents (0 changes), 0 unchanged, 0 refused;") {
		t.Errorf("import of an empty directory: %v, printed %q", err, out.String())
	}
}
