-- Attachments: files sent with messages. The bytes live in an object store (a directory
-- under the data dir, or S3 in a cluster) under `storage_key`; this row is what readers,
-- downloads and the compliance export see. One row per file, stored in the transaction
-- that stores the message carrying it (`seq`). Retention deletes the row with its
-- message and queues the key in `attachment_trash`, which the retention job empties by
-- deleting the objects.
CREATE TABLE attachments (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    uploader_id     INTEGER NOT NULL REFERENCES users(id),
    name            TEXT    NOT NULL,
    content_type    TEXT    NOT NULL,
    size            INTEGER NOT NULL,
    sha256          TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    storage_key     TEXT    NOT NULL UNIQUE,
    FOREIGN KEY (conversation_id, seq) REFERENCES messages(conversation_id, seq)
);
CREATE INDEX attachments_message ON attachments(conversation_id, seq);

-- Objects whose rows are gone (retention): deleted from the object store, then from here.
CREATE TABLE attachment_trash (
    storage_key TEXT    PRIMARY KEY,
    queued_at   INTEGER NOT NULL
);
