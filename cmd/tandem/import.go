package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tandem-sync/tandem/internal/leb128"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// importCommand runs `tandem import --automerge-repo-dir DIR`: it imports
// every document of an official automerge-repo sync server's data directory
// into the configured store (--data-dir or --database-url), keeping each
// document's ID. It prints the counts on stdout and one line per refused
// document on stderr, and fails if a document was refused or the store
// failed. Running it again changes nothing.
func importCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var dir string
	cfg, err := parseConfig("import", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&dir, "automerge-repo-dir", getenv("TANDEM_AUTOMERGE_REPO_DIR"),
			"tandem import: the data directory of an automerge-repo sync server (NodeFSStorageAdapter) to import")
	})
	if err != nil {
		return err
	}
	if dir == "" {
		return errors.New("--automerge-repo-dir is required: the data directory of the automerge-repo sync server to import")
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("--automerge-repo-dir: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("--automerge-repo-dir: %s is not a directory", dir)
	}
	log := newLogger(cfg, stderr)
	st, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	imp := &importer{store: st, log: log, refuse: func(key string, reason error) {
		fmt.Fprintf(stderr, "refused %s: %v\n", key, reason)
	}}
	rep, err := imp.run(ctx, dir)
	if cerr := st.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	fmt.Fprintln(stdout, rep)
	log.Debug("import finished", "dir", dir, "store", storeName(cfg), "imported", rep.Imported,
		"unchanged", rep.Unchanged, "refused", rep.Refused, "changes", rep.Changes, "took", rep.Elapsed)
	switch {
	case err != nil:
		return err
	case rep.Refused == 1:
		return errors.New("1 document refused")
	case rep.Refused > 1:
		return fmt.Errorf("%d documents refused", rep.Refused)
	}
	return nil
}

// importReport counts what an import did.
type importReport struct {
	// Imported documents had changes the store lacked; Changes counts those.
	Imported int
	// Unchanged documents were in the store with all their changes already.
	Unchanged int
	// Refused documents did not load, or held a change a peer could not send.
	Refused int
	Changes int64
	// Files and Bytes count the chunk files read.
	Files   int
	Bytes   int64
	Elapsed time.Duration
}

func (r importReport) String() string {
	return fmt.Sprintf("imported %d documents (%d changes), %d unchanged, %d refused; read %d chunk files (%d bytes) in %s",
		r.Imported, r.Changes, r.Unchanged, r.Refused, r.Files, r.Bytes, r.Elapsed.Round(time.Millisecond))
}

// importer copies documents from an automerge-repo data directory into a
// store.
type importer struct {
	store room.Store
	log   *slog.Logger
	// refuse reports a document that is not imported, by the name of its
	// directory (its document ID when that is valid).
	refuse func(key string, reason error)
}

// repoDoc is one document directory of an automerge-repo data directory.
type repoDoc struct {
	key string // the storage key: the document ID, if the directory holds a valid one
	dir string
}

// run imports every document found in dir, one at a time. A document that
// cannot be imported is refused and the others go on; a store failure, or
// ctx ending, stops the run. The report counts what was done either way.
func (imp *importer) run(ctx context.Context, dir string) (rep importReport, err error) {
	start := time.Now()
	defer func() { rep.Elapsed = time.Since(start) }()
	docs, err := findRepoDocs(dir)
	if err != nil {
		return rep, err
	}
	imp.log.Debug("importing", "dir", dir, "documents", len(docs))
	for _, d := range docs {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("interrupted: %w", err)
		}
		res, err := imp.importDoc(ctx, d)
		rep.Files += res.files
		rep.Bytes += res.bytes
		switch {
		case err != nil:
			return rep, err
		case res.refused != nil:
			rep.Refused++
			imp.refuse(d.key, res.refused)
		case res.changes == 0:
			rep.Unchanged++
			imp.log.Debug("document unchanged", "doc", d.key)
		default:
			rep.Imported++
			rep.Changes += int64(res.changes)
			imp.log.Debug("document imported", "doc", d.key, "changes", res.changes)
		}
	}
	return rep, nil
}

// findRepoDocs lists the document directories of an automerge-repo data
// directory in the layout of NodeFSStorageAdapter (automerge-repo 2.x): a
// storage key [id, "snapshot"|"incremental"|"sync-state", name] is the file
// DIR/id[:2]/id[2:]/<kind>/<name>. A directory at that depth holding a
// snapshot/ or incremental/ directory is a document. Everything else (the
// adapter's own storage-adapter-id file at DIR/st/orage-adapter-id, other
// namespaces' keys) is not, and is skipped. Documents come sorted by key.
func findRepoDocs(dir string) ([]repoDoc, error) {
	prefixes, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var docs []repoDoc
	for _, p := range prefixes {
		if !p.IsDir() {
			continue
		}
		rests, err := os.ReadDir(filepath.Join(dir, p.Name()))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, p.Name()), err)
		}
		for _, r := range rests {
			d := repoDoc{key: p.Name() + r.Name(), dir: filepath.Join(dir, p.Name(), r.Name())}
			if r.IsDir() && (isDir(filepath.Join(d.dir, "snapshot")) || isDir(filepath.Join(d.dir, "incremental"))) {
				docs = append(docs, d)
			}
		}
	}
	slices.SortFunc(docs, func(a, b repoDoc) int { return strings.Compare(a.key, b.key) })
	return docs, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// docResult is the outcome of importing one document.
type docResult struct {
	changes int   // changes appended to the store (0: unchanged)
	refused error // why the document was refused, or nil
	files   int   // chunk files read
	bytes   int64
}

// importDoc imports one document: it loads the document's chunks as the
// official server does (snapshots first, then incrementals), refusing any
// that are not whole Automerge chunks or do not load completely; hands the
// changes the store does not have yet to the stored document as a peer's
// sync message would carry them, so they pass the same checks; appends the
// changes it accepts to the document's log; and compacts the log into a
// snapshot, as a room does when it is evicted. Only a store failure is
// returned as an error.
func (imp *importer) importDoc(ctx context.Context, d repoDoc) (docResult, error) {
	var res docResult
	id, err := wire.ParseDocID(d.key)
	if err != nil {
		res.refused = fmt.Errorf("the directory %s does not name an automerge-repo document: %w", d.dir, err)
		return res, nil
	}
	files, err := readChunkFiles(d.dir)
	for _, f := range files {
		res.files++
		res.bytes += int64(len(f.data))
	}
	if err != nil {
		res.refused = err
		return res, nil
	}
	src, err := loadChunkFiles(files)
	if err != nil {
		res.refused = err
		return res, nil
	}
	imported, err := src.ChangesSince(nil)
	if err != nil {
		res.refused = fmt.Errorf("read its history: %w", err)
		return res, nil
	}

	// The document as the store holds it, to merge into: usually none.
	var dst *core.Doc
	stored, err := imp.store.Load(ctx, id)
	switch {
	case errors.Is(err, room.ErrNotFound):
		dst = core.NewDoc()
	case err != nil:
		return res, fmt.Errorf("load %s from the store: %w", id, err)
	default:
		if dst, err = core.Load(stored.Snapshot, stored.Changes); err != nil {
			res.refused = fmt.Errorf("the store already holds this document, and it does not load: %w", err)
			return res, nil
		}
	}
	var missing []core.Change
	for _, c := range imported {
		if !dst.Has(c.Hash) {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return res, nil // unchanged
	}
	accepted, err := receiveChanges(dst, missing)
	if err != nil {
		res.refused = fmt.Errorf("its changes are not accepted: %w", err)
		return res, nil
	}
	for _, h := range src.Heads() {
		if !dst.Has(h) {
			res.refused = fmt.Errorf("change %x did not apply to the stored document", h[:4])
			return res, nil
		}
	}

	lastSeq, err := imp.store.Append(ctx, id, accepted)
	if err != nil {
		return res, fmt.Errorf("store %s: %w", id, err)
	}
	res.changes = len(accepted)
	if lastSeq != stored.LastSeq+int64(len(accepted)) {
		// Someone else appended to this document meanwhile: the log holds
		// changes dst lacks, so leave it to the room that wrote them.
		imp.log.Warn("document changed in the store during its import; not compacted", "doc", id)
		return res, nil
	}
	if err := imp.compact(ctx, id, dst, lastSeq); err != nil {
		return res, err
	}
	return res, nil
}

// compact replaces the document's log through lastSeq with a snapshot of
// doc, checked first to re-load with the same heads, as rooms compact. The
// snapshot's heads are recorded with it, which rooms check on load.
func (imp *importer) compact(ctx context.Context, id wire.DocID, doc *core.Doc, lastSeq int64) error {
	snap, heads := doc.Save(), doc.Heads()
	check, err := core.Load(snap, nil)
	if err != nil || !slices.Equal(check.Heads(), heads) {
		// Its changes are stored; a room compacts them when it can.
		imp.log.Warn("document imported, but its snapshot does not re-load with its heads; not compacted", "doc", id, "err", err)
		return nil
	}
	if err := imp.store.Compact(ctx, id, snap, heads, lastSeq); err != nil {
		return fmt.Errorf("compact %s: %w", id, err)
	}
	return nil
}

// chunkFile is one file of a document directory.
type chunkFile struct {
	name     string // relative to the document directory
	snapshot bool
	data     []byte
}

// readChunkFiles reads a document directory's chunk files in the order the
// official server loads them: every file under snapshot/, then every file
// under incremental/ (each kind recursively, by name). sync-state/ holds the
// server's sync states with its peers, which Tandem does not keep.
func readChunkFiles(dir string) ([]chunkFile, error) {
	var files []chunkFile
	for _, kind := range []string{"snapshot", "incremental"} {
		root := filepath.Join(dir, kind)
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) && path == root {
				return fs.SkipDir
			}
			if err != nil || e.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			name, _ := filepath.Rel(dir, path)
			files = append(files, chunkFile{name: filepath.ToSlash(name), snapshot: kind == "snapshot", data: data})
			return nil
		})
		if err != nil {
			return files, fmt.Errorf("read %s: %w", root, err)
		}
	}
	if len(files) == 0 {
		return nil, errors.New("no snapshot or incremental files")
	}
	return files, nil
}

// loadChunkFiles builds the document from its chunk files, as the official
// server does (one incremental load of them all), but refuses what that
// load would silently get wrong: a file that is not a sequence of whole
// Automerge chunks (an empty or truncated write), a snapshot that does not
// load on its own, and a change that did not make it into the document
// (damaged, or its dependencies missing).
func loadChunkFiles(files []chunkFile) (*core.Doc, error) {
	var all [][]byte
	var want []core.Hash
	for _, f := range files {
		if len(f.data) == 0 {
			return nil, fmt.Errorf("%s: empty file", f.name)
		}
		hs, err := core.ChunkHashes(f.data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		if f.snapshot {
			if _, err := core.Load(f.data, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", f.name, err)
			}
		}
		want = append(want, hs...)
		all = append(all, f.data)
	}
	doc, err := core.Load(nil, all)
	if err != nil {
		return nil, fmt.Errorf("load %d chunk files: %w", len(all), err)
	}
	for _, h := range want {
		if !doc.Has(h) {
			return nil, fmt.Errorf("change %x did not load: it is damaged, or changes it depends on are missing", h[:4])
		}
	}
	if doc.Empty() {
		return nil, errors.New("the document holds no changes")
	}
	return doc, nil
}

// Changes reach the document in sync messages of at most
// importBatchChanges changes and importBatchBytes bytes, so that however
// long a history is, each message stays far within what sync/core accepts
// in one message from a peer.
const (
	importBatchChanges = 1000
	importBatchBytes   = 8 << 20
)

// receiveChanges hands changes (in causal order) to doc as a peer's sync
// messages would carry them, and returns those the document accepted, which
// are what its log stores. On error, the messages before the failing one
// have been applied to doc.
func receiveChanges(doc *core.Doc, changes []core.Change) ([]core.Change, error) {
	ss := doc.NewSyncState()
	var accepted []core.Change
	for len(changes) > 0 {
		n, size := 0, 0
		for n < len(changes) && n < importBatchChanges && (n == 0 || size+len(changes[n].Data) <= importBatchBytes) {
			size += len(changes[n].Data)
			n++
		}
		got, err := ss.Receive(changesMessage(changes[:n]))
		if err != nil {
			return nil, err
		}
		accepted = append(accepted, got...)
		changes = changes[n:]
	}
	return accepted, nil
}

// changesMessage wraps changes in a sync message as a peer would send them:
// V1 (type byte 0x42), no heads, no needs, no have entries, then the
// changes, each LEB128-length-prefixed. Handing it to
// core.SyncState.Receive puts the changes through every check a peer's
// changes pass before they reach the Automerge core.
func changesMessage(changes []core.Change) []byte {
	n := 5
	for _, c := range changes {
		n += 10 + len(c.Data)
	}
	b := make([]byte, 0, n)
	b = append(b, 0x42, 0, 0, 0) // type, heads, needs, haves
	b = leb128.AppendUint(b, uint64(len(changes)))
	for _, c := range changes {
		b = leb128.AppendUint(b, uint64(len(c.Data)))
		b = append(b, c.Data...)
	}
	return b
}
