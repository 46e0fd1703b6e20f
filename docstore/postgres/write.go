package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/wire"
)

// pgMaxBatchBytes ends a group-commit batch early when its changes add up
// to this many bytes, to keep the transaction's messages far below
// Postgres's 1 GB limits. A single Append is never split.
const pgMaxBatchBytes = 32 << 20

// appendOp is one Append waiting for the writer goroutine.
type appendOp struct {
	ctx     context.Context // the caller's
	id      wire.DocID
	changes []core.Change // the caller's changes, copied, without repeated hashes
	size    int           // total length of the changes' data
	queued  time.Time     // when Append was called
	done    chan error    // buffered; receives the outcome after the commit
	last    int64         // set when the transaction holding the op commits
	added   int64         // how many of the changes were new, set with last
}

// newAppendOp copies changes, so that the caller may reuse its buffers as
// soon as Append returns (even with a context error, while the writer may
// still be committing them), and drops repeated hashes (the first wins).
func newAppendOp(ctx context.Context, id wire.DocID, changes []core.Change) *appendOp {
	op := &appendOp{ctx: ctx, id: id, queued: time.Now(), done: make(chan error, 1)}
	seen := make(map[core.Hash]bool, len(changes))
	for _, c := range changes {
		if seen[c.Hash] {
			continue
		}
		seen[c.Hash] = true
		op.size += len(c.Data)
		op.changes = append(op.changes, core.Change{Hash: c.Hash, Data: bytes.Clone(c.Data)})
	}
	return op
}

// Append implements room.Store. It returns once the transaction holding the
// changes has committed. If ctx ends first, Append returns ctx's error and
// the changes may or may not have been stored: appending them again is
// safe, as logged changes are skipped.
func (p *Store) Append(ctx context.Context, id wire.DocID, changes []core.Change) (int64, error) {
	_, last, err := p.AppendLogged(ctx, id, changes)
	return last, err
}

// AppendLogged implements room.LogStore: Append, reporting also the first
// log position it gave a new change (last+1 when none was new). The new
// changes of one Append are numbered by one statement under the
// document's lock, so they hold first..last with nothing between. (When a
// transaction is retried after its connection failed and had in fact
// committed, the retry finds every change logged and reports none new:
// a room following the log then finds the gap and reads it from the log.)
func (p *Store) AppendLogged(ctx context.Context, id wire.DocID, changes []core.Change) (first, last int64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, fmt.Errorf("postgres: append %s: %w", id, err)
	}
	if len(changes) == 0 {
		last, err := p.lastSeq(ctx, id)
		if err != nil {
			return 0, 0, fmt.Errorf("postgres: append %s: %w", id, err)
		}
		return last + 1, last, nil
	}
	op := newAppendOp(ctx, id, changes)
	if !p.opts.groupCommit {
		err = p.do(ctx, func(ctx context.Context) error { return p.appendTx(ctx, []*appendOp{op}) })
	} else {
		select {
		case p.ops <- op:
			select {
			case err = <-op.done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		case <-p.closed:
			err = docstore.ErrClosed
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: append %s: %w", id, err)
	}
	return op.last - op.added + 1, op.last, nil
}

// lastSeq returns the document's last seq, or 0 if it is not stored.
func (p *Store) lastSeq(ctx context.Context, id wire.DocID) (int64, error) {
	var last int64
	err := p.do(ctx, func(ctx context.Context) error {
		err := p.pool.QueryRow(ctx, `SELECT last_seq FROM docs WHERE doc_id = $1`, string(id)).Scan(&last)
		if errors.Is(err, pgx.ErrNoRows) {
			last = 0
			return nil
		}
		return err
	})
	return last, err
}

// writer is the goroutine that batches Appends when group commit is on.
// While every committer is busy, Appends queue up; once one is free, the
// writer takes the Appends waiting and those that arrive until the first
// one's window has passed (at once, if it waited that long already) or the
// batch is full, and hands the batch to a goroutine that commits it in one
// transaction. Up to p.opts.committers batches commit at once, so that the
// server works on one while the next one's round trips and commit flush
// are under way. Batches hold different documents: an Append whose
// document is in this batch or one still committing waits for a later one,
// so that one document's Appends commit in order.
func (p *Store) writer() {
	defer p.wg.Done()
	idle := make(chan struct{}, p.opts.committers)
	for range p.opts.committers {
		idle <- struct{}{}
	}
	finished := make(chan struct{}, 1) // a batch committed: its documents are free
	var mu sync.Mutex
	busy := make(map[wire.DocID]bool) // documents of the batches committing
	isBusy := func(id wire.DocID) bool { mu.Lock(); defer mu.Unlock(); return busy[id] }
	var committing sync.WaitGroup
	defer committing.Wait()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var carry []*appendOp
	for {
		<-idle
		var batch []*appendOp
		inBatch := make(map[wire.DocID]bool)
		var changes, size int
		add := func(op *appendOp) {
			if inBatch[op.id] || isBusy(op.id) {
				carry = append(carry, op)
				return
			}
			inBatch[op.id] = true
			batch = append(batch, op)
			changes += len(op.changes)
			size += op.size
		}
		retryCarried := func() {
			waiting := carry
			carry = nil
			for _, op := range waiting {
				add(op)
			}
		}
		retryCarried()
		for len(batch) == 0 {
			select {
			case op := <-p.ops:
				add(op)
			case <-finished:
				retryCarried()
			case <-p.closed:
				if len(carry) == 0 {
					return
				}
				<-finished // the batch holding a carried op's document
				retryCarried()
			}
		}
		deadline := batch[0].queued.Add(p.opts.window)
	gather:
		for changes < p.opts.maxBatch && size < pgMaxBatchBytes {
			select {
			case op := <-p.ops:
				add(op)
				continue
			default:
			}
			wait := time.Until(deadline)
			if wait <= 0 {
				break
			}
			timer.Reset(wait)
			select {
			case op := <-p.ops:
				timer.Stop()
				add(op)
			case <-timer.C:
				break gather
			case <-p.closed:
				timer.Stop()
				break gather
			}
		}
		mu.Lock()
		for id := range inBatch {
			busy[id] = true
		}
		mu.Unlock()
		committing.Go(func() {
			p.commit(batch)
			mu.Lock()
			for id := range inBatch {
				delete(busy, id)
			}
			mu.Unlock()
			idle <- struct{}{}
			select {
			case finished <- struct{}{}:
			default:
			}
		})
	}
}

// commit runs ops in one transaction and tells each op's caller the
// outcome. The transaction runs under a context that ends when every
// caller has given up, so that one caller's deadline does not fail the
// others, nor does an unreachable server hold the writer after all of them
// left. If the transaction fails for a reason other than the connection
// (retry handles those, and if they persist, every op fails: retrying
// them one by one would not help), commit runs each op again in its own
// transaction, so that a document the server rejects fails only its own
// Append.
func (p *Store) commit(ops []*appendOp) {
	live := make([]*appendOp, 0, len(ops))
	for _, op := range ops {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		live = append(live, op)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var callers atomic.Int64
	callers.Store(int64(len(live)))
	for _, op := range live {
		stop := context.AfterFunc(op.ctx, func() {
			if callers.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	err := p.retry(ctx, func(ctx context.Context) error { return p.appendTx(ctx, live) })
	if err == nil || len(live) == 1 || retryable(err) {
		for _, op := range live {
			op.done <- err
		}
		return
	}
	for _, op := range live {
		if err := op.ctx.Err(); err != nil {
			op.done <- err
			continue
		}
		p.stats.retried.Add(1)
		op.done <- p.retry(op.ctx, func(ctx context.Context) error { return p.appendTx(ctx, []*appendOp{op}) })
	}
}

// appendTx appends the ops' changes, each op to a different document, in
// one transaction and one round trip, whatever the number of ops: a single
// pipeline (pgx.Batch), which the server runs as one implicit transaction
// committed at its end, of two statements:
//
//  1. lockSQL creates the documents' rows that are missing and locks the
//     others, in doc_id order as every writer does (so that writers on
//     several nodes do not deadlock): no other writer can log changes for
//     these documents until we commit;
//  2. appendSQL, under that lock and with a snapshot taken after it,
//     inserts the changes whose hashes are not logged yet, numbered on
//     from each document's last seq without gaps, with one multi-row
//     INSERT, updates the documents' counters (only new changes count),
//     and returns every document's last seq.
//
// With the outbox enabled, the same two statements also write the batch's
// events (lockOutboxSQL, appendOutboxSQL): still one round trip.
//
// On success it sets each op's last seq.
func (p *Store) appendTx(ctx context.Context, ops []*appendOp) error {
	ops = slices.Clone(ops)
	slices.SortFunc(ops, func(a, b *appendOp) int { return strings.Compare(string(a.id), string(b.id)) })
	ids := make([]string, len(ops))
	var docs []string
	var hashes, data [][]byte
	for i, op := range ops {
		ids[i] = string(op.id)
		for j, c := range op.changes {
			docs = append(docs, ids[i])
			hashes = append(hashes, op.changes[j].Hash[:])
			data = append(data, nonNil(c.Data))
		}
	}
	now := p.now()
	lasts := make(map[string]int64, len(ops))
	addedTo := make(map[string]int64, len(ops))
	var added uint64
	result := func(rows pgx.Rows) error {
		var id string
		var last, n int64
		_, err := pgx.ForEachRow(rows, []any{&id, &last, &n}, func() error {
			lasts[id] = max(lasts[id], last)
			addedTo[id] += n
			added += uint64(n)
			return nil
		})
		return err
	}
	var b pgx.Batch
	if o := p.opts.outbox; o.Enabled {
		b.Queue(lockOutboxSQL, ids, now)
		b.Queue(appendOutboxSQL, docs, hashes, data, now, ids, now.Add(o.Debounce), o.CoalesceHorizon(now)).Query(result)
	} else {
		b.Queue(lockSQL, ids, now)
		b.Queue(appendSQL, docs, hashes, data, now, ids).Query(result)
	}
	// Close reads up to the end of the pipeline, where the server commits:
	// only a nil error means the changes are durable.
	if err := p.pool.SendBatch(ctx, &b).Close(); err != nil {
		return err
	}
	for i, op := range ops {
		last, ok := lasts[ids[i]]
		if !ok {
			return fmt.Errorf("document %s has no row after the append", op.id)
		}
		op.last, op.added = last, addedTo[ids[i]]
	}
	p.stats.transactions.Add(1)
	p.stats.appends.Add(uint64(len(ops)))
	p.stats.changes.Add(added)
	return nil
}

// lockSQL is appendTx's first statement. $1 are the documents, sorted; $2
// the time. ON CONFLICT DO UPDATE with a WHERE that is never true updates
// nothing but locks every conflicting row, like SELECT ... FOR UPDATE.
const lockSQL = `INSERT INTO docs AS d (doc_id, created_at, updated_at) SELECT unnest($1::text[]), $2, $2
	ON CONFLICT (doc_id) DO UPDATE SET updated_at = d.updated_at WHERE false`

// appendSQL is appendTx's second statement. $1, $2 and $3 are the changes'
// documents, hashes and data, grouped by document, in append order; $4 is
// the time; $5 the documents. Data-modifying CTEs all see the statement's
// snapshot, so the result has each document's last seq from before the
// statement, and, for the documents that got new changes, a second row
// with the new last seq (the larger) and the number of changes added, from
// upd's RETURNING. (Not a join of the two: with the generic plan's small
// row estimates, that would be a nested loop, quadratic in the batch.)
const appendSQL = appendCTEs + appendResult

// appendCTEs are appendSQL's data-modifying CTEs, which appendOutboxSQL
// extends.
const appendCTEs = `WITH u AS (
	SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) WITH ORDINALITY AS u (doc_id, hash, data, ord)
), fresh AS (
	SELECT u.doc_id, u.hash, u.data, row_number() OVER (PARTITION BY u.doc_id ORDER BY u.ord) AS n
	FROM u WHERE NOT EXISTS (SELECT 1 FROM changes c WHERE c.doc_id = u.doc_id AND c.hash = u.hash)
), ins AS (
	INSERT INTO changes (doc_id, seq, hash, data)
	SELECT f.doc_id, d.last_seq + f.n, f.hash, f.data FROM fresh f JOIN docs d ON d.doc_id = f.doc_id
	RETURNING doc_id, seq, octet_length(data) AS size
), upd AS (
	UPDATE docs AS d SET last_seq = a.last_seq, change_count = d.change_count + a.n,
		size_bytes = d.size_bytes + a.size, updated_at = $4
	FROM (SELECT doc_id, max(seq) AS last_seq, count(*) AS n, sum(size) AS size FROM ins GROUP BY doc_id) AS a
	WHERE d.doc_id = a.doc_id
	RETURNING d.doc_id, d.last_seq, a.n
)`

// appendResult is appendSQL's result, after its CTEs.
const appendResult = `
SELECT doc_id, last_seq, n FROM upd
UNION ALL
SELECT doc_id, last_seq, 0 FROM docs WHERE doc_id = ANY($5::text[])`

// nonNil returns b, or an empty slice for nil, which would bind as NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
