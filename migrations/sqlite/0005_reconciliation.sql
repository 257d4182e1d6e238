-- Nightly reconciliation; see migrations/postgres/0005_reconciliation.sql.

CREATE TABLE reconciliations
(
    sbxlh               TEXT    NOT NULL,
    business_date       TEXT    NOT NULL,
    dzywlsh             TEXT    NOT NULL,
    unit                TEXT    NOT NULL,
    received_at         TEXT    NOT NULL,
    as_of               TEXT    NOT NULL,
    documents_reported  INTEGER NOT NULL,
    operations_reported INTEGER NOT NULL,
    state_deviations    INTEGER NOT NULL,
    unrepaired          INTEGER NOT NULL,
    log_deviations      INTEGER NOT NULL,
    PRIMARY KEY (sbxlh, business_date)
) STRICT;
CREATE INDEX reconciliations_date ON reconciliations (business_date);

CREATE TABLE reconciliation_deviations
(
    sbxlh          TEXT    NOT NULL,
    business_date  TEXT    NOT NULL,
    position       INTEGER NOT NULL,
    kind           TEXT    NOT NULL CHECK (kind IN ('state', 'log')),
    zjbs           TEXT,
    holder_rybs    TEXT,
    holder_name    TEXT,
    unit           TEXT,
    cabinet_state  TEXT,
    zjgxlh         TEXT,
    drawer_row     INTEGER,
    drawer_col     INTEGER,
    platform_state TEXT,
    platform_sbxlh TEXT,
    reason         TEXT,
    repaired       INTEGER,
    ywlsh          TEXT,
    side           TEXT,
    operation      TEXT,
    operated_at    TEXT,
    note           TEXT,
    PRIMARY KEY (sbxlh, business_date, position)
) STRICT;

CREATE TABLE reconciliation_missing
(
    sbxlh         TEXT    NOT NULL,
    business_date TEXT    NOT NULL,
    unit          TEXT,
    detected_ms   INTEGER NOT NULL,
    PRIMARY KEY (sbxlh, business_date)
) STRICT;

CREATE INDEX events_sender ON events (json_extract(metadata, '$.ei'), aggregate_type);
