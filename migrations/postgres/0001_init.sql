-- Tandem document store, PostgreSQL dialect, version 1.
--
-- The same logical schema as sqlite/0001_init.sql. Per document: an
-- append-only change log (changes) and a compacted snapshot (docs.snapshot).
-- Loading a document is its snapshot plus the log rows with
-- seq > snapshot_seq, in seq order. Compaction sets a new snapshot and deletes
-- the log rows it covers in one transaction. Sequence numbers are per document
-- and only grow: docs.last_seq remembers the last one handed out, so they keep
-- increasing after compaction has deleted the rows that held them.
--
-- Writers lock a document's docs row (INSERT ... ON CONFLICT DO NOTHING, then
-- SELECT ... FOR UPDATE, in doc_id order) before they touch its log rows.

CREATE TABLE docs (
    doc_id         text COLLATE "C" NOT NULL PRIMARY KEY, -- bs58check document ID; byte order
    snapshot       bytea,                              -- doc.Save() output; NULL before the first compaction
    snapshot_heads bytea       NOT NULL DEFAULT ''::bytea, -- the snapshot's heads: concatenated 32-byte hashes
    snapshot_seq   bigint      NOT NULL DEFAULT 0,     -- last log seq the snapshot covers
    last_seq       bigint      NOT NULL DEFAULT 0,     -- last log seq handed out; never decreases
    change_count   bigint      NOT NULL DEFAULT 0,     -- rows in the log (changes after the snapshot)
    size_bytes     bigint      NOT NULL DEFAULT 0,     -- octet_length(snapshot) + total length of the log's data
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CHECK (octet_length(snapshot_heads) % 32 = 0),
    CHECK (snapshot_seq >= 0 AND snapshot_seq <= last_seq),
    CHECK (change_count >= 0 AND size_bytes >= 0)
) WITH (fillfactor = 80); -- every append updates the row: leave room for HOT updates

CREATE TABLE changes (
    doc_id text COLLATE "C" NOT NULL REFERENCES docs (doc_id) ON DELETE CASCADE,
    seq    bigint NOT NULL,                        -- per-document log sequence number, from 1
    hash   bytea  NOT NULL CHECK (octet_length(hash) = 32),
    data   bytea  NOT NULL,                        -- the change's raw bytes
    PRIMARY KEY (doc_id, seq),
    UNIQUE (doc_id, hash)
);

-- Snapshots and large changes are compressed by Automerge already: store
-- them out of line without trying pglz on them again.
ALTER TABLE docs ALTER COLUMN snapshot SET STORAGE EXTERNAL;
ALTER TABLE changes ALTER COLUMN data SET STORAGE EXTERNAL;

-- Store-wide settings, e.g. key 'storage_id' (a UUIDv4 made on first use).
CREATE TABLE meta (
    key   text NOT NULL PRIMARY KEY,
    value text NOT NULL
);
