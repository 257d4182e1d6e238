-- The embedded event store. sqlite-es reads and writes the named columns; SQLite has one
-- writer at a time, so the AUTOINCREMENT position is the commit order.
CREATE TABLE events
(
    global_position INTEGER PRIMARY KEY AUTOINCREMENT,
    aggregate_type  TEXT                           NOT NULL,
    aggregate_id    TEXT                           NOT NULL,
    sequence        INTEGER CHECK (sequence >= 0)  NOT NULL,
    event_type      TEXT                           NOT NULL,
    event_version   TEXT                           NOT NULL,
    payload         TEXT                           NOT NULL,
    metadata        TEXT                           NOT NULL,
    UNIQUE (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_idempotency_key ON events (json_extract(metadata, '$.idempotency_key'))
    WHERE json_extract(metadata, '$.idempotency_key') IS NOT NULL;
