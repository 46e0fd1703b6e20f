package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/migrations"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// File is the name of the database file Open keeps in its
// directory (with SQLite's -wal and -shm files beside it).
const File = "tandem.db"

// SQLite is the embedded document store: one SQLite database in WAL mode
// with synchronous=FULL, so that a change is on disk (fsynced) before Append
// returns. It implements room.Store and is safe for concurrent use.
//
// SQLite allows one writer at a time, so every write goes through a single
// goroutine, which commits whatever writes are waiting together in one
// transaction (group commit): the appends of many rooms share one fsync.
// Reads (Load, Stat) use a small pool of connections and never wait for
// writes.
type Store struct {
	db     *sql.DB
	path   string
	now    func() time.Time
	outbox sqlcommon.OutboxOptions

	ops    chan *writeOp // to the writer goroutine; unbuffered
	closed chan struct{} // closed by Close
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	idMu      sync.Mutex
	storageID string // cached once read or made
}

// Option configures Open.
type Option func(*options)

type options struct {
	busyTimeout time.Duration
	readConns   int
	maxBatch    int
	now         func() time.Time
	outbox      sqlcommon.OutboxOptions
}

// WithOutbox makes the store write change events into its outbox, in the
// same transactions as the changes, for a webhook.Sender (see outbox.go):
// 'created' and 'deleted' events due at once, and at most one pending
// 'changed' event per document, due debounce after the first append it
// stands for. Without it (the default), the store writes no events.
func WithOutbox(debounce time.Duration) Option {
	return func(o *options) { o.outbox = sqlcommon.OutboxOptions{Enabled: true, Debounce: max(debounce, 0)} }
}

// WithBusyTimeout sets how long a statement waits for a lock held by another
// process sharing the database file (default 10s).
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) { o.busyTimeout = d }
}

// WithReadConns sets how many connections serve reads concurrently with the
// writer (default 4, at least 1).
func WithReadConns(n int) Option {
	return func(o *options) { o.readConns = max(n, 1) }
}

// WithClock sets the clock used for the documents' created and updated
// times (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Open opens (creating them if needed) the directory dir and the
// database dir/tandem.db, and brings its schema up to date. Several
// processes may open the same directory at once; their migrations and
// writes serialize on SQLite's file lock.
func Open(ctx context.Context, dir string, opts ...Option) (*Store, error) {
	o := options{busyTimeout: 10 * time.Second, readConns: 4, maxBatch: 256, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dir, File))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db, err := sql.Open("sqlite", sqliteDSN(path, o.busyTimeout))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1 + o.readConns)
	db.SetMaxIdleConns(1 + o.readConns)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)

	if err := enableWAL(ctx, db, o.busyTimeout); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: enable WAL: %w", path, err)
	}
	if err := checkSynchronous(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if _, err := sqlcommon.RunMigrations(ctx, migrations.SQLite(), migrator{db: db, now: o.now}); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		path:   path,
		now:    o.now,
		outbox: o.outbox,
		ops:    make(chan *writeOp),
		closed: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.writer(o.maxBatch)
	return s, nil
}

// sqliteDSN returns the data source name for the database file at path (an
// absolute path). Every connection gets the PRAGMAs busy_timeout (first),
// synchronous=FULL, so that a commit in WAL mode is fsynced, and
// foreign_keys; the journal mode persists in the file, so enableWAL sets it
// once. _txlock=immediate makes BeginTx (but not a read-only transaction)
// start with BEGIN IMMEDIATE, taking the write lock at once.
func sqliteDSN(path string, busyTimeout time.Duration) string {
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(busyTimeout.Milliseconds(), 10))
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(path), RawQuery: q.Encode()}
	return u.String()
}

// enableWAL switches the database file to WAL mode, which persists in the
// file. Two processes switching a new file at the same time can each hold a
// shared lock while wanting an exclusive one; SQLite then fails one of them
// with SQLITE_BUSY at once rather than calling the busy handler (which
// would deadlock), so retry until timeout. A file system without shared
// memory support leaves the mode unchanged: that is an error.
func enableWAL(ctx context.Context, db *sql.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		var mode string
		err := db.QueryRowContext(ctx, `PRAGMA journal_mode = WAL`).Scan(&mode)
		if err == nil {
			if !strings.EqualFold(mode, "wal") {
				return fmt.Errorf("journal_mode is %q, not WAL", mode)
			}
			return nil
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkSynchronous verifies that the DSN's synchronous=FULL took effect.
func checkSynchronous(ctx context.Context, db *sql.DB) error {
	var sync int
	if err := db.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
		return err
	}
	if sync < 2 {
		return fmt.Errorf("synchronous is %d, not FULL", sync)
	}
	return nil
}

// Path returns the database file's absolute path.
func (s *Store) Path() string { return s.path }

// StorageID implements room.Store.
func (s *Store) StorageID(ctx context.Context) (string, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.storageID != "" {
		return s.storageID, nil
	}
	fresh := uuid.NewString() // version 4, from crypto/rand
	var id string
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('storage_id', ?)
			ON CONFLICT (key) DO NOTHING`, fresh); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'storage_id'`).Scan(&id)
	})
	if err != nil {
		return "", fmt.Errorf("sqlite: storage ID: %w", err)
	}
	s.storageID = id
	return id, nil
}

// Load implements room.Store.
func (s *Store) Load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	doc, err := s.load(ctx, id)
	if err != nil {
		return room.StoredDoc{}, fmt.Errorf("sqlite: load %s: %w", id, err)
	}
	return doc, nil
}

func (s *Store) load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	var doc room.StoredDoc
	if s.isClosed() {
		return doc, docstore.ErrClosed
	}
	// One read transaction, so that the snapshot and the log agree even if
	// a compaction commits meanwhile.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return doc, err
	}
	defer tx.Rollback() //nolint:errcheck // read-only

	var heads []byte
	var snapSeq int64
	err = tx.QueryRowContext(ctx, `SELECT snapshot, snapshot_heads, snapshot_seq, last_seq
		FROM docs WHERE doc_id = ?`, string(id)).Scan(&doc.Snapshot, &heads, &snapSeq, &doc.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return room.StoredDoc{}, room.ErrNotFound
	}
	if err != nil {
		return doc, err
	}
	if doc.SnapshotHeads, err = sqlcommon.DecodeHeads(heads); err != nil {
		return doc, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT data FROM changes WHERE doc_id = ? AND seq > ? ORDER BY seq`,
		string(id), snapSeq)
	if err != nil {
		return doc, err
	}
	defer rows.Close()
	for rows.Next() {
		var data []byte // Scan copies into a fresh slice
		if err := rows.Scan(&data); err != nil {
			return doc, err
		}
		if data == nil {
			data = []byte{}
		}
		doc.Changes = append(doc.Changes, data)
	}
	if err := rows.Err(); err != nil {
		return doc, err
	}
	if doc.Snapshot == nil && len(doc.Changes) == 0 {
		return room.StoredDoc{}, room.ErrNotFound
	}
	return doc, nil
}

// Stat returns what the store holds for the document, or an error wrapping
// room.ErrNotFound.
func (s *Store) Stat(ctx context.Context, id wire.DocID) (room.DocStat, error) {
	st := room.DocStat{ID: id}
	var created, updated int64
	err := s.db.QueryRowContext(ctx, `SELECT size_bytes, coalesce(length(snapshot), 0),
			last_seq, created_at, updated_at
		FROM docs WHERE doc_id = ?`, string(id)).Scan(
		&st.Size, &st.SnapshotSize, &st.Changes, &created, &updated)
	switch {
	case s.isClosed():
		err = docstore.ErrClosed
	case errors.Is(err, sql.ErrNoRows):
		err = room.ErrNotFound
	}
	if err != nil {
		return room.DocStat{}, fmt.Errorf("sqlite: stat %s: %w", id, err)
	}
	st.CreatedAt = time.UnixMilli(created)
	st.UpdatedAt = time.UnixMilli(updated)
	return st, nil
}

// Close stops the writer after the writes in progress and closes the
// database. Later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.wg.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("sqlite: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// encodeHeads concatenates heads (never nil: the column is NOT NULL).

var (
	_ room.Store     = (*Store)(nil)
	_ webhook.Outbox = (*Store)(nil)
)

var _ room.SyncStates = (*Store)(nil)
