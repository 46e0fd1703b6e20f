package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandem-sync/tandem/docstore"
	"github.com/tandem-sync/tandem/sync/core"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// What several Tandem nodes sharing one database need of the store
// (sync/cluster, "Clustering" in docs/ARCHITECTURE.md): reading a
// document's log from a position (room.LogStore, with AppendLogged in
// write.go), and compacting each document on one node at a time
// (room.CompactionLocker).

// compactLockClass is the first key of the two-key advisory locks that
// guard compactions; the second is hashtext(doc_id). (Two-key locks do not
// collide with the one-key migration lock.)
const compactLockClass = 0x54444d43 // "TDMC"

// ChangesAfter implements room.LogStore. One statement reads the log and
// the snapshot, so they agree even if a compaction commits meanwhile.
func (p *Store) ChangesAfter(ctx context.Context, id wire.DocID, after int64) (room.StoredDoc, error) {
	doc, err := p.readLog(ctx, id, after)
	if err != nil {
		return room.StoredDoc{}, fmt.Errorf("postgres: changes of %s after %d: %w", id, after, err)
	}
	return doc, nil
}

// LockCompaction implements room.CompactionLocker with a session advisory
// lock on a connection of its own, which the compaction then uses: a node
// that dies while it holds the lock releases it with its connection.
func (p *Store) LockCompaction(ctx context.Context, id wire.DocID) (room.CompactionLock, error) {
	if p.isClosed() {
		return nil, fmt.Errorf("postgres: lock compaction of %s: %w", id, docstore.ErrClosed)
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: lock compaction of %s: %w", id, err)
	}
	var got bool
	var snapSeq *int64 // NULL: not locked, or no docs row
	err = conn.QueryRow(ctx, `SELECT l, CASE WHEN l THEN (SELECT snapshot_seq FROM docs WHERE doc_id = $2) END
		FROM pg_try_advisory_lock($1, hashtext($2)) AS l`, int32(compactLockClass), string(id)).Scan(&got, &snapSeq)
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("postgres: lock compaction of %s: %w", id, err)
	}
	if !got {
		conn.Release()
		return nil, fmt.Errorf("postgres: lock compaction of %s: %w", id, room.ErrCompactionBusy)
	}
	lock := &compactionLock{p: p, conn: conn, id: id}
	if snapSeq != nil {
		lock.snapSeq = *snapSeq
	}
	return lock, nil
}

// compactionLock is a held LockCompaction.
type compactionLock struct {
	p       *Store
	conn    *pgxpool.Conn
	id      wire.DocID
	snapSeq int64
}

func (l *compactionLock) SnapshotSeq() int64 { return l.snapSeq }

func (l *compactionLock) Compact(ctx context.Context, snapshot []byte, heads []core.Hash, throughSeq int64) error {
	if len(snapshot) == 0 {
		return fmt.Errorf("postgres: compact %s: empty snapshot", l.id)
	}
	err := pgx.BeginFunc(ctx, l.conn, func(tx pgx.Tx) error { return l.p.compactTx(ctx, tx, l.id, snapshot, heads, throughSeq) })
	if err != nil {
		return fmt.Errorf("postgres: compact %s: %w", l.id, err)
	}
	return nil
}

func (l *compactionLock) Unlock() {
	ctx, cancel := context.WithTimeout(context.Background(), defaultConnectTimeout)
	defer cancel()
	if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, hashtext($2))`, int32(compactLockClass), string(l.id)); err != nil {
		// The lock is the session's: close the connection to free it.
		_ = l.conn.Conn().Close(ctx)
	}
	l.conn.Release()
}

var (
	_ room.LogStore         = (*Store)(nil)
	_ room.CompactionLocker = (*Store)(nil)
)
