-- The process managers (docs/processes.md); see migrations/postgres/0004_processes.sql.

CREATE TABLE process_cursors
(
    name            TEXT PRIMARY KEY,
    cursor_tx       INTEGER NOT NULL,
    cursor_position INTEGER NOT NULL,
    handled         INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
) STRICT;

CREATE TABLE process_positions
(
    process        TEXT    NOT NULL,
    aggregate_type TEXT    NOT NULL,
    aggregate_id   TEXT    NOT NULL,
    sequence       INTEGER NOT NULL,
    PRIMARY KEY (process, aggregate_type, aggregate_id)
) STRICT;

CREATE TABLE process_documents
(
    zjbs           TEXT PRIMARY KEY,
    aggregate      TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    state_since    INTEGER NOT NULL,
    planned_return TEXT,
    device         TEXT,
    open_reminder  TEXT
) STRICT;
CREATE INDEX process_documents_due ON process_documents (state, planned_return);

CREATE TABLE process_cabinets
(
    sbxlh     TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    state     TEXT NOT NULL,
    unit      TEXT
) STRICT;
CREATE INDEX process_cabinets_unit ON process_cabinets (unit);

CREATE TABLE process_reminders
(
    id             TEXT PRIMARY KEY,
    aggregate      TEXT NOT NULL,
    state          TEXT NOT NULL,
    zjbs           TEXT NOT NULL,
    unit           TEXT,
    planned_return TEXT
) STRICT;
CREATE INDEX process_reminders_open ON process_reminders (state, unit);

CREATE TABLE process_holdings
(
    zjbs   TEXT PRIMARY KEY,
    holder TEXT,
    state  TEXT NOT NULL
) STRICT;
CREATE INDEX process_holdings_holder ON process_holdings (holder);

CREATE TABLE notification_outbox
(
    id              TEXT PRIMARY KEY,
    reminder        TEXT    NOT NULL,
    unit            TEXT,
    payload         TEXT    NOT NULL,
    queued_ms       INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    delivered_ms    INTEGER,
    last_error      TEXT
) STRICT;
CREATE INDEX notification_outbox_due ON notification_outbox (delivered_ms, next_attempt_ms);
