-- The event store. postgres-es reads and writes the first seven columns by name; the rest
-- fill themselves.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    -- Commit-ordering key for the feed: identity values are taken before commit, so readers
    -- order by (tx_id, global_position) and stop below the oldest transaction still running.
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    tx_id           xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE INDEX events_commit_order ON events (tx_id, global_position);

-- The same business serial never yields a second event: enforced in the very transaction that
-- appends, so concurrent duplicates and restarts cannot slip through.
CREATE UNIQUE INDEX events_idempotency_key ON events ((metadata ->> 'idempotency_key'))
    WHERE (metadata ->> 'idempotency_key') IS NOT NULL;
