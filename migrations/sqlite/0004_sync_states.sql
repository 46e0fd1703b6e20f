-- The sync state of each peer storage (a client with IndexedDB or a
-- filesystem, identified by the storage ID it announces in join) per
-- document, as the Automerge core encodes it: what the two sides share, so
-- that a reconnecting client exchanges only what changed.
CREATE TABLE sync_states (
    doc_id     TEXT    NOT NULL,
    storage_id TEXT    NOT NULL,
    state      BLOB    NOT NULL,
    updated_at INTEGER NOT NULL, -- unix ms
    PRIMARY KEY (doc_id, storage_id)
) STRICT;
