package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/docstore/internal/sqlcommon"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// writeOp is one write waiting for the writer goroutine.
type writeOp struct {
	ctx  context.Context // the caller's; checked before run starts
	run  func(ctx context.Context, tx *sql.Tx) error
	done chan error // buffered; receives run's outcome after the commit
}

// write runs fn in a write transaction, possibly shared with other writes
// (group commit), and returns once that transaction has committed or failed.
// fn's changes are committed only if it returns nil; if the commit fails,
// write returns its error. Once the writer has taken the write, write waits
// for it even if ctx ends, so that fn never runs after write returns.
func (s *Store) write(ctx context.Context, fn func(ctx context.Context, tx *sql.Tx) error) error {
	op := &writeOp{ctx: ctx, run: fn, done: make(chan error, 1)}
	select {
	case s.ops <- op:
	case <-s.closed:
		return docstore.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-op.done
}

// writer is the only goroutine that writes. It takes one write, then every
// write already waiting (up to maxBatch), and runs them in one transaction.
func (s *Store) writer(maxBatch int) {
	defer s.wg.Done()
	batch := make([]*writeOp, 0, maxBatch)
	for {
		select {
		case op := <-s.ops:
			batch = append(batch[:0], op)
		case <-s.closed:
			return
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case op := <-s.ops:
				batch = append(batch, op)
			default:
				break gather
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit runs ops in one BEGIN IMMEDIATE transaction, each under its own
// savepoint so that a failing op is undone without failing the others.
// Statements run under a context that is never canceled: a canceled
// statement interrupts the connection, which could roll back the whole
// shared transaction.
func (s *Store) commit(ops []*writeOp) {
	ctx := context.Background()
	errs := make([]error, len(ops))
	var live int
	for i, op := range ops {
		if errs[i] = op.ctx.Err(); errs[i] == nil {
			live++
		}
	}
	finish := func(batchErr error) {
		for i, op := range ops {
			if errs[i] == nil {
				errs[i] = batchErr
			}
			op.done <- errs[i]
		}
	}
	if live == 0 {
		finish(nil)
		return
	}

	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE (see sqliteDSN)
	if err != nil {
		finish(err)
		return
	}
	abort := func(err error) {
		_ = tx.Rollback()
		finish(err)
	}
	if live == 1 {
		// No savepoint needed: the op's failure rolls back the transaction.
		for i, op := range ops {
			if errs[i] == nil {
				if errs[i] = op.run(ctx, tx); errs[i] != nil {
					abort(nil)
					return
				}
			}
		}
	} else {
		for i, op := range ops {
			if errs[i] != nil {
				continue
			}
			if _, err := tx.ExecContext(ctx, `SAVEPOINT op`); err != nil {
				abort(err)
				return
			}
			if errs[i] = op.run(ctx, tx); errs[i] != nil {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO op`); err != nil {
					abort(err)
					return
				}
			}
			if _, err := tx.ExecContext(ctx, `RELEASE op`); err != nil {
				abort(err)
				return
			}
		}
	}
	finish(tx.Commit())
}

// Append implements room.Store. It returns once the transaction holding the
// changes is committed and fsynced.
func (s *Store) Append(ctx context.Context, id wire.DocID, changes []core.Change) (int64, error) {
	if len(changes) == 0 {
		var last int64
		err := s.db.QueryRowContext(ctx, `SELECT last_seq FROM docs WHERE doc_id = ?`, string(id)).Scan(&last)
		switch {
		case s.isClosed():
			return 0, fmt.Errorf("sqlite: append %s: %w", id, docstore.ErrClosed)
		case errors.Is(err, sql.ErrNoRows):
			return 0, nil
		case err != nil:
			return 0, fmt.Errorf("sqlite: append %s: %w", id, err)
		}
		return last, nil
	}
	var last int64
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) (err error) {
		last, err = s.appendTx(ctx, tx, id, changes)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: append %s: %w", id, err)
	}
	return last, nil
}

func (s *Store) appendTx(ctx context.Context, tx *sql.Tx, id wire.DocID, changes []core.Change) (int64, error) {
	at := s.now()
	now := at.UnixMilli()
	var last int64
	err := tx.QueryRowContext(ctx, `SELECT last_seq FROM docs WHERE doc_id = ?`, string(id)).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		_, err = tx.ExecContext(ctx, `INSERT INTO docs (doc_id, created_at, updated_at) VALUES (?, ?, ?)`,
			string(id), now, now)
		if err == nil && s.outbox.Enabled {
			_, err = tx.ExecContext(ctx, `INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
				VALUES (?, 'created', ?, ?, ?)`, string(id), now, now, now)
		}
	}
	if err != nil {
		return 0, err
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO changes (doc_id, seq, hash, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (doc_id, hash) DO NOTHING`)
	if err != nil {
		return 0, err
	}
	defer ins.Close()
	var added, bytes int64
	for _, c := range changes {
		data := c.Data
		if data == nil {
			data = []byte{} // a nil []byte would bind as NULL
		}
		res, err := ins.ExecContext(ctx, string(id), last+1, c.Hash[:], data)
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		if n > 0 { // 0: the hash is already in the log
			last++
			added++
			bytes += int64(len(data))
		}
	}
	if added > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE docs SET last_seq = ?, change_count = change_count + ?,
				size_bytes = size_bytes + ?, updated_at = ?
			WHERE doc_id = ?`, last, added, bytes, now, string(id)); err != nil {
			return 0, err
		}
		if s.outbox.Enabled {
			if err := s.changedEvent(ctx, tx, id, at); err != nil {
				return 0, err
			}
		}
	}
	return last, nil
}

// changedEvent writes a 'changed' event for the document, due after the
// debounce, unless a pending one will not be sent for a while yet and so
// covers this append too (see sqlcommon.OutboxOptions.coalesceHorizon).
func (s *Store) changedEvent(ctx context.Context, tx *sql.Tx, id wire.DocID, at time.Time) error {
	now := at.UnixMilli()
	_, err := tx.ExecContext(ctx, `INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
		SELECT ?, 'changed', ?, ?, ?
		WHERE NOT EXISTS (SELECT 1 FROM outbox WHERE doc_id = ? AND kind = 'changed'
			AND delivered_at IS NULL AND failed = 0 AND max(due_at, next_attempt_at) > ?)`,
		string(id), now, at.Add(s.outbox.Debounce).UnixMilli(), now,
		string(id), s.outbox.CoalesceHorizon(at).UnixMilli())
	return err
}

// Compact implements room.Store. It fails, wrapping room.ErrNotFound, if
// the document is not stored, and fails if snapshot is empty or throughSeq
// lies outside [current snapshot's seq, last seq]: an older snapshot would
// lose the changes that a newer compaction already deleted from the log.
func (s *Store) Compact(ctx context.Context, id wire.DocID, snapshot []byte, heads []core.Hash, throughSeq int64) error {
	if len(snapshot) == 0 {
		return fmt.Errorf("sqlite: compact %s: empty snapshot", id)
	}
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var snapSeq, last int64
		err := tx.QueryRowContext(ctx, `SELECT snapshot_seq, last_seq FROM docs WHERE doc_id = ?`,
			string(id)).Scan(&snapSeq, &last)
		if errors.Is(err, sql.ErrNoRows) {
			return room.ErrNotFound
		}
		if err != nil {
			return err
		}
		if throughSeq < snapSeq || throughSeq > last {
			return fmt.Errorf("through seq %d is outside the log [%d, %d]", throughSeq, snapSeq, last)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE doc_id = ? AND seq <= ?`,
			string(id), throughSeq); err != nil {
			return err
		}
		var count, logBytes int64
		if err := tx.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(length(data)), 0)
			FROM changes WHERE doc_id = ?`, string(id)).Scan(&count, &logBytes); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE docs SET snapshot = ?, snapshot_heads = ?, snapshot_seq = ?,
				change_count = ?, size_bytes = ?, updated_at = ?
			WHERE doc_id = ?`,
			snapshot, sqlcommon.EncodeHeads(heads), throughSeq, count, int64(len(snapshot))+logBytes,
			s.now().UnixMilli(), string(id))
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: compact %s: %w", id, err)
	}
	return nil
}

// Delete implements room.Store.
func (s *Store) Delete(ctx context.Context, id wire.DocID) error {
	err := s.write(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM changes WHERE doc_id = ?`, string(id)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sync_states WHERE doc_id = ?`, string(id)); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM docs WHERE doc_id = ?`, string(id))
		if err != nil || !s.outbox.Enabled {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // nothing was deleted: no event
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE doc_id = ? AND kind = 'changed'
			AND delivered_at IS NULL AND failed = 0`, string(id)); err != nil {
			return err
		}
		now := s.now().UnixMilli()
		_, err = tx.ExecContext(ctx, `INSERT INTO outbox (doc_id, kind, created_at, due_at, next_attempt_at)
			VALUES (?, 'deleted', ?, ?, ?)`, string(id), now, now, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete %s: %w", id, err)
	}
	return nil
}
