-- Tandem document store, PostgreSQL dialect, version 2: the webhook outbox.
--
-- The same logical schema as sqlite/0002_outbox.sql. One row per change event
-- (a document created, changed or deleted), written in the same transaction
-- as the change it describes, when the store is opened with the outbox
-- enabled. A sender (api/webhook) delivers the rows that are due and marks
-- them delivered, or records the failed attempt and when to try again; after
-- too many attempts it gives up and sets failed. Rows are never deleted by the
-- sender: delivered and failed rows stay for the delivery log until pruned.
--
-- Debounce: while a document has a pending 'changed' row that is not due yet
-- (or waits for a retry), further appends add nothing; the event's payload
-- carries the document's heads as of delivery. Appends check this under
-- their lock on the document's docs row, so two appends cannot both add one.

CREATE TABLE outbox (
    id              bigserial   PRIMARY KEY,
    doc_id          text COLLATE "C" NOT NULL,         -- no foreign key: 'deleted' outlives the document
    kind            text        NOT NULL CHECK (kind IN ('created', 'changed', 'deleted')),
    created_at      timestamptz NOT NULL,              -- when the event occurred
    due_at          timestamptz NOT NULL,              -- not sent before (debounce)
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0), -- delivery attempts finished
    next_attempt_at timestamptz NOT NULL,              -- not retried before
    last_error      text        NOT NULL DEFAULT '',   -- why the last attempt failed
    delivered_at    timestamptz,                       -- NULL until delivered
    failed          boolean     NOT NULL DEFAULT false -- true: gave up after the last attempt
);

-- The sender's queue: undelivered rows it has not given up on, in id order.
CREATE INDEX outbox_pending ON outbox (id) WHERE delivered_at IS NULL AND NOT failed;

-- The debounce check on every append: a document's pending 'changed' rows.
CREATE INDEX outbox_pending_changed ON outbox (doc_id) WHERE kind = 'changed' AND delivered_at IS NULL AND NOT failed;

-- The failed deliveries, for the delivery log.
CREATE INDEX outbox_failed ON outbox (id) WHERE failed;
