-- The sync state of each peer storage (a client with IndexedDB or a
-- filesystem, identified by the storage ID it announces in join) per
-- document, as the Automerge core encodes it: what the two sides share, so
-- that a reconnecting client exchanges only what changed.
CREATE TABLE sync_states (
    doc_id     text        NOT NULL,
    storage_id text        NOT NULL,
    state      bytea       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (doc_id, storage_id)
);
