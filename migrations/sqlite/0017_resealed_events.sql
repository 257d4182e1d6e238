-- Events whose personal fields were sealed in place by `custody keys seal-plaintext`
-- (docs/personal-data.md, "Migrating a plaintext store"): per event, the hash of its plain form
-- (still its chain hash and Merkle leaf) beside that of its stored, sealed form. `run` is the
-- sequence of the run's record event (aggregate Store/personal-data), which holds the SM3 of
-- the run's rows, so the next checkpoint covers them. Rows are only ever inserted.
CREATE TABLE resealed_events
(
    global_position INTEGER PRIMARY KEY,
    run             INTEGER NOT NULL,
    aggregate_type  TEXT    NOT NULL,
    aggregate_id    TEXT    NOT NULL,
    sequence        INTEGER NOT NULL,
    plain_hash      TEXT    NOT NULL,
    sealed_hash     TEXT    NOT NULL
) STRICT;

CREATE INDEX resealed_events_run ON resealed_events (run, global_position);
