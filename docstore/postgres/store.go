package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
	"github.com/tandem-sync/tandem/webhook"
)

// defaultConnectTimeout bounds a connection attempt when the URL sets no
// connect_timeout, so that an unreachable server fails calls instead of
// hanging them (pgxpool's own fallback is two minutes).
const defaultConnectTimeout = 10 * time.Second

// Postgres is the PostgreSQL document store, for deployments that already
// run Postgres or run several Tandem nodes. It implements room.Store and is
// safe for concurrent use. Its connection URL is anything pgx accepts,
// including pool settings such as pool_max_conns.
//
// Appends from all rooms go through one batching goroutine (group commit):
// the Appends that queue up while earlier batches commit, or that arrive
// within a short window (WithCommitWindow), are committed together in one
// transaction of one round trip, and up to two such transactions are in
// flight at once. Append returns once its transaction has committed, with
// synchronous_commit on, so the changes survive a crash of the server.
// Reads, compactions and deletes use the connection pool directly.
//
// Calls that fail because the connection was lost are retried a few times
// on fresh connections (Append is idempotent, by change hash), and the pool
// reconnects by itself once the server is back.
type Store struct {
	pool       *pgxpool.Pool
	connString string
	now        func() time.Time
	opts       options

	ops    chan *appendOp // to the writer goroutine; unbuffered
	closed chan struct{}  // closed by Close
	wg     sync.WaitGroup

	closeOnce sync.Once

	idMu      sync.Mutex
	storageID string // cached once read or made

	stats struct{ transactions, appends, changes, retried atomic.Uint64 }
}

// Option configures Open.
type Option func(*options)

type options struct {
	groupCommit bool
	window      time.Duration
	maxBatch    int
	committers  int
	now         func() time.Time
	outbox      sqlcommon.OutboxOptions
	claimLease  time.Duration
}

// WithEventClaims makes DueEvents claim the events it returns for lease,
// for several nodes that run webhook senders on one database: each due
// event goes to one of them, and to another only if the first has not
// marked it delivered or failed within lease (it died, say). Without it
// (the default), DueEvents only reads, as one sender needs.
func WithEventClaims(lease time.Duration) Option {
	return func(o *options) { o.claimLease = max(lease, 0) }
}

// WithOutbox makes the store write change events into its outbox,
// in the same transactions as the changes, for a webhook.Sender (see
// outbox.go): 'created' and 'deleted' events due at once, and at most one
// pending 'changed' event per document, due debounce after the first
// append it stands for. The events of a group-commit batch are written by
// the batch's own statements, in its one round trip. Without it (the
// default), the store writes no events.
func WithOutbox(debounce time.Duration) Option {
	return func(o *options) { o.outbox = sqlcommon.OutboxOptions{Enabled: true, Debounce: max(debounce, 0)} }
}

// WithGroupCommit turns group commit on (the default) or off. Off, every
// Append is its own transaction on its own pool connection: only useful to
// measure what group commit buys.
func WithGroupCommit(on bool) Option {
	return func(o *options) { o.groupCommit = on }
}

// WithCommitWindow sets how long an Append may wait for others to join its
// transaction (default 100µs), counted from when it was called: Appends
// that queued while earlier transactions committed have waited long enough
// already and go at once. A longer window means fewer, larger transactions
// at moderate load, but adds up to its length to every Append's latency
// and, since a room waits for its Append before it makes more changes,
// lowers the throughput of busy rooms (see BenchmarkPostgresAppend). 0
// batches only what is already waiting.
func WithCommitWindow(d time.Duration) Option {
	return func(o *options) { o.window = max(d, 0) }
}

// WithMaxBatch sets how many changes one group-commit transaction takes at
// most (default 512, at least 1); a single Append is never split.
func WithMaxBatch(changes int) Option {
	return func(o *options) { o.maxBatch = max(changes, 1) }
}

// WithClock sets the clock used for the documents' created and
// updated times (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Stats counts what a Postgres store's writer has done.
type Stats struct {
	// Transactions is the number of append transactions committed.
	Transactions uint64
	// Appends is the number of Append calls (with changes) committed;
	// Appends/Transactions is the mean group-commit batch.
	Appends uint64
	// Changes is the number of changes added to logs, duplicates excluded.
	Changes uint64
	// Retried is the number of Appends retried alone after the transaction
	// they shared with others failed.
	Retried uint64
}

// Stats returns the store's counters so far.
func (p *Store) Stats() Stats {
	return Stats{
		Transactions: p.stats.transactions.Load(),
		Appends:      p.stats.appends.Load(),
		Changes:      p.stats.changes.Load(),
		Retried:      p.stats.retried.Load(),
	}
}

// Open connects to the PostgreSQL database at url (a postgres://
// URL or key=value string, as pgx accepts) and brings its schema up to date
// (see Migrate). The connections get synchronous_commit=on unless
// url sets it; Open refuses synchronous_commit=off, which would
// break Append's durability promise.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{groupCommit: true, window: 100 * time.Microsecond, maxBatch: 512, committers: 2, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", err)
	}
	cc := cfg.ConnConfig
	where := fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	if _, set := cc.RuntimeParams["synchronous_commit"]; !set {
		cc.RuntimeParams["synchronous_commit"] = "on"
	}
	// Leave at least half the pool to reads, compactions and deletes.
	o.committers = min(o.committers, max(1, int(cfg.MaxConns)/2))
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open %s: %w", where, err)
	}
	if err := prepare(ctx, pool, o.now); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: open %s: %w", where, err)
	}
	p := &Store{
		pool:       pool,
		connString: url,
		now:        o.now,
		opts:       o,
		ops:        make(chan *appendOp),
		closed:     make(chan struct{}),
	}
	if o.groupCommit {
		p.wg.Add(1)
		go p.writer()
	}
	return p, nil
}

// prepare checks the server's durability setting and migrates, on
// one connection of pool.
func prepare(ctx context.Context, pool *pgxpool.Pool, now func() time.Time) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var syncCommit string
	if err := conn.QueryRow(ctx, `SHOW synchronous_commit`).Scan(&syncCommit); err != nil {
		return err
	}
	if syncCommit == "off" {
		return errors.New("synchronous_commit is off: commits would not be durable")
	}
	return migrate(ctx, conn.Conn(), now)
}

// StorageID implements room.Store.
func (p *Store) StorageID(ctx context.Context) (string, error) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if p.storageID != "" {
		return p.storageID, nil
	}
	fresh := uuid.NewString() // version 4, from crypto/rand
	var id string
	err := p.do(ctx, func(ctx context.Context) error {
		// Two statements, not one: if another node inserts first, the
		// SELECT's fresh snapshot sees its row.
		if _, err := p.pool.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('storage_id', $1)
			ON CONFLICT (key) DO NOTHING`, fresh); err != nil {
			return err
		}
		return p.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'storage_id'`).Scan(&id)
	})
	if err != nil {
		return "", fmt.Errorf("postgres: storage ID: %w", err)
	}
	p.storageID = id
	return id, nil
}

// Load implements room.Store. One statement reads the snapshot and the log
// after it, so they agree even if a compaction commits meanwhile.
func (p *Store) Load(ctx context.Context, id wire.DocID) (room.StoredDoc, error) {
	doc, err := p.readLog(ctx, id, -1) // every position is after -1: the snapshot and its log
	if err == nil && doc.Snapshot == nil && len(doc.Changes) == 0 {
		err = room.ErrNotFound
	}
	if err != nil {
		return room.StoredDoc{}, fmt.Errorf("postgres: load %s: %w", id, err)
	}
	return doc, nil
}

// readLog reads, in one statement, the document's logged changes after
// position after and, when after is below the snapshot's position, the
// snapshot (whose changes are no longer logged) in their stead. Load and
// ChangesAfter are both this read.
func (p *Store) readLog(ctx context.Context, id wire.DocID, after int64) (room.StoredDoc, error) {
	var doc room.StoredDoc
	err := p.do(ctx, func(ctx context.Context) error {
		var heads []byte
		doc = room.StoredDoc{}
		err := p.pool.QueryRow(ctx, `SELECT CASE WHEN $2 < d.snapshot_seq THEN d.snapshot END,
				CASE WHEN $2 < d.snapshot_seq THEN d.snapshot_heads ELSE ''::bytea END, d.last_seq,
				ARRAY(SELECT c.data FROM changes c WHERE c.doc_id = d.doc_id AND c.seq > greatest($2, d.snapshot_seq) ORDER BY c.seq)
			FROM docs d WHERE d.doc_id = $1`, string(id), after).Scan(&doc.Snapshot, &heads, &doc.LastSeq, &doc.Changes)
		if errors.Is(err, pgx.ErrNoRows) {
			return room.ErrNotFound
		}
		if err != nil {
			return err
		}
		doc.SnapshotHeads, err = sqlcommon.DecodeHeads(heads)
		return err
	})
	if err != nil {
		return room.StoredDoc{}, err
	}
	return normalizeChanges(doc), nil
}

// normalizeChanges gives a loaded document the Changes the conformance
// suite expects: nil when there are none, and no nil entry.
func normalizeChanges(doc room.StoredDoc) room.StoredDoc {
	if len(doc.Changes) == 0 {
		doc.Changes = nil
	}
	for i, c := range doc.Changes {
		if c == nil {
			doc.Changes[i] = []byte{}
		}
	}
	return doc
}

// Stat returns what the store holds for the document, or an error wrapping
// room.ErrNotFound.
func (p *Store) Stat(ctx context.Context, id wire.DocID) (room.DocStat, error) {
	st := room.DocStat{ID: id}
	err := p.do(ctx, func(ctx context.Context) error {
		err := p.pool.QueryRow(ctx, `SELECT size_bytes, coalesce(octet_length(snapshot), 0),
				last_seq, created_at, updated_at
			FROM docs WHERE doc_id = $1`, string(id)).Scan(
			&st.Size, &st.SnapshotSize, &st.Changes, &st.CreatedAt, &st.UpdatedAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return room.ErrNotFound
		}
		return err
	})
	if err != nil {
		return room.DocStat{}, fmt.Errorf("postgres: stat %s: %w", id, err)
	}
	return st, nil
}

// Compact implements room.Store. It fails, wrapping room.ErrNotFound, if
// the document is not stored, and fails if snapshot is empty or throughSeq
// lies outside [current snapshot's seq, last seq]: an older snapshot would
// lose the changes that a newer compaction already deleted from the log.
func (p *Store) Compact(ctx context.Context, id wire.DocID, snapshot []byte, heads []core.Hash, throughSeq int64) error {
	if len(snapshot) == 0 {
		return fmt.Errorf("postgres: compact %s: empty snapshot", id)
	}
	err := p.do(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return p.compactTx(ctx, tx, id, snapshot, heads, throughSeq) })
	})
	if err != nil {
		return fmt.Errorf("postgres: compact %s: %w", id, err)
	}
	return nil
}

// compactTx is Compact's transaction.
func (p *Store) compactTx(ctx context.Context, tx pgx.Tx, id wire.DocID, snapshot []byte, heads []core.Hash, throughSeq int64) error {
	var snapSeq, last int64
	err := tx.QueryRow(ctx, `SELECT snapshot_seq, last_seq FROM docs WHERE doc_id = $1 FOR UPDATE`,
		string(id)).Scan(&snapSeq, &last)
	if errors.Is(err, pgx.ErrNoRows) {
		return room.ErrNotFound
	}
	if err != nil {
		return err
	}
	if throughSeq < snapSeq || throughSeq > last {
		return fmt.Errorf("through seq %d is outside the log [%d, %d]", throughSeq, snapSeq, last)
	}
	// The UPDATE's subqueries see the rows the DELETE returns, and
	// its SET sees the old row: size_bytes loses the old snapshot
	// and the deleted changes, and gains the new snapshot.
	_, err = tx.Exec(ctx, `WITH del AS (
			DELETE FROM changes WHERE doc_id = $1 AND seq <= $2 RETURNING octet_length(data) AS n)
		UPDATE docs SET snapshot = $3, snapshot_heads = $4, snapshot_seq = $2,
			change_count = change_count - (SELECT count(*) FROM del),
			size_bytes = size_bytes - coalesce(octet_length(snapshot), 0) + octet_length($3::bytea)
				- (SELECT coalesce(sum(n), 0) FROM del),
			updated_at = $5
		WHERE doc_id = $1`,
		string(id), throughSeq, snapshot, sqlcommon.EncodeHeads(heads), p.now())
	return err
}

// Delete implements room.Store. The log goes with the docs row (ON DELETE
// CASCADE). With the outbox enabled, the same statement writes the
// 'deleted' event (deleteOutboxSQL).
func (p *Store) Delete(ctx context.Context, id wire.DocID) error {
	err := p.do(ctx, func(ctx context.Context) error {
		if p.opts.outbox.Enabled {
			_, err := p.pool.Exec(ctx, deleteOutboxSQL, string(id), p.now())
			return err
		}
		_, err := p.pool.Exec(ctx, `WITH states AS (DELETE FROM sync_states WHERE doc_id = $1)
			DELETE FROM docs WHERE doc_id = $1`, string(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres: delete %s: %w", id, err)
	}
	return nil
}

// Close stops the writer after the transaction in progress and the Appends
// it has taken, then closes the pool (which waits for the connections in
// use). Later calls return docstore.ErrClosed.
func (p *Store) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.wg.Wait()
		p.pool.Close()
	})
	return nil
}

func (p *Store) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

// pgAttempts is how many times retry runs an operation whose connection
// failed.
const pgAttempts = 3

// do runs fn for one of the store's methods: docstore.ErrClosed after Close, else
// fn with retry's retries. (The writer calls retry directly: it finishes
// the Appends it has taken after Close, before the pool closes.)
func (p *Store) do(ctx context.Context, fn func(ctx context.Context) error) error {
	if p.isClosed() {
		return docstore.ErrClosed
	}
	err := p.retry(ctx, fn)
	if err != nil && p.isClosed() {
		return docstore.ErrClosed // most likely the pool closed under fn
	}
	return err
}

// retry runs fn. If fn fails in a way that says the connection, not the
// statement, failed (see retryable), retry runs it again, up to pgAttempts
// times in all, after resetting the pool when the connection was lost: a
// server that terminated one backend (restart, failover,
// pg_terminate_backend) has usually terminated them all, and the idle ones
// would fail the next attempts. Every operation of the store may be
// repeated safely: Append skips the changes it already logged, Compact and
// Delete end in the same state, reads do not write.
func (p *Store) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	delay := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || attempt == pgAttempts || ctx.Err() != nil || !retryable(err) {
			return err
		}
		if connectionLost(err) {
			p.pool.Reset()
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return err
		}
		delay *= 5
	}
}

// retryable reports whether err says that the operation did not get a fair
// chance: the connection or the server went away, or the server aborted the
// transaction for a conflict (serialization failure, deadlock) or overload.
// Errors about the statement or its data are not retryable.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "53300": // serialization failure, deadlock, too many connections
			return true
		}
		return connectionLost(err)
	}
	return connectionLost(err)
}

// connectionLost reports whether err says that the connection failed or
// the server shut it down.
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03": // admin shutdown (pg_terminate_backend), crash shutdown, cannot connect now
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection exception
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) || errors.As(err, &connectErr) ||
		errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

var (
	_ room.Store     = (*Store)(nil)
	_ webhook.Outbox = (*Store)(nil)
)

var _ room.SyncStates = (*Store)(nil)
