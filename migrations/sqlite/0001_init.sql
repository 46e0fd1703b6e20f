-- Tandem document store, SQLite dialect, version 1.
--
-- Per document: an append-only change log (changes) and a compacted snapshot
-- (docs.snapshot). Loading a document is its snapshot plus the log rows with
-- seq > snapshot_seq, in seq order. Compaction sets a new snapshot and deletes
-- the log rows it covers in one transaction. Sequence numbers are per document
-- and only grow: docs.last_seq remembers the last one handed out, so they keep
-- increasing after compaction has deleted the rows that held them.

CREATE TABLE docs (
    doc_id         TEXT    NOT NULL PRIMARY KEY,   -- bs58check document ID
    snapshot       BLOB,                           -- doc.Save() output; NULL before the first compaction
    snapshot_heads BLOB    NOT NULL DEFAULT x'',   -- the snapshot's heads: concatenated 32-byte hashes
    snapshot_seq   INTEGER NOT NULL DEFAULT 0,     -- last log seq the snapshot covers
    last_seq       INTEGER NOT NULL DEFAULT 0,     -- last log seq handed out; never decreases
    change_count   INTEGER NOT NULL DEFAULT 0,     -- rows in the log (changes after the snapshot)
    size_bytes     INTEGER NOT NULL DEFAULT 0,     -- length(snapshot) + total length of the log's data
    created_at     INTEGER NOT NULL,               -- unix milliseconds
    updated_at     INTEGER NOT NULL,               -- unix milliseconds
    CHECK (length(snapshot_heads) % 32 = 0),
    CHECK (snapshot_seq >= 0 AND snapshot_seq <= last_seq),
    CHECK (change_count >= 0 AND size_bytes >= 0)
) STRICT;

CREATE TABLE changes (
    doc_id TEXT    NOT NULL REFERENCES docs (doc_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,                       -- per-document log sequence number, from 1
    hash   BLOB    NOT NULL CHECK (length(hash) = 32),
    data   BLOB    NOT NULL,                       -- the change's raw bytes
    PRIMARY KEY (doc_id, seq),
    UNIQUE (doc_id, hash)
) STRICT;

-- Store-wide settings, e.g. key 'storage_id' (a UUIDv4 made on first use).
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
