-- The reconciliation results become a projection; see
-- migrations/postgres/0007_reconciliation_view.sql.
DROP TABLE reconciliation_deviations;
DROP TABLE reconciliations;

CREATE TABLE view_reconciliations
(
    generation          INTEGER NOT NULL,
    id                  TEXT    NOT NULL,
    version             INTEGER NOT NULL,
    updated_at          TEXT    NOT NULL,
    aggregate           TEXT    NOT NULL,
    state               TEXT    NOT NULL,
    sbxlh               TEXT,
    business_date       TEXT,
    dzywlsh             TEXT,
    unit                TEXT,
    received_at         TEXT,
    as_of               TEXT,
    documents_reported  INTEGER,
    operations_reported INTEGER,
    state_deviations    INTEGER,
    unrepaired          INTEGER,
    log_deviations      INTEGER,
    PRIMARY KEY (generation, id)
) STRICT;
CREATE INDEX view_reconciliations_date ON view_reconciliations (generation, business_date, sbxlh);

CREATE TABLE view_reconciliation_deviations
(
    generation     INTEGER NOT NULL,
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
    PRIMARY KEY (generation, sbxlh, business_date, position)
) STRICT;
