-- The read side (SPEC §7). Every view row carries the generation it belongs to: a rebuild
-- fills generation g+1 while readers keep reading the active one, then swaps in one update.

-- One row per projection: which generation readers see, and how far it has applied the log.
CREATE TABLE projections
(
    name              TEXT PRIMARY KEY,
    active_generation INTEGER NOT NULL,
    cursor_tx         INTEGER NOT NULL,
    cursor_position   INTEGER NOT NULL,
    applied           INTEGER NOT NULL,
    updated_ms        INTEGER NOT NULL
) STRICT;

-- The last sequence of each aggregate a projection has applied: nothing is applied twice and a
-- gap is filled from the event store before the next event.
CREATE TABLE projection_positions
(
    projection     TEXT NOT NULL,
    generation     INTEGER NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    PRIMARY KEY (projection, generation, aggregate_type, aggregate_id)
) STRICT;

CREATE TABLE view_documents
(
    generation     INTEGER NOT NULL,
    zjbs           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    updated_at     TEXT NOT NULL,
    aggregate      TEXT NOT NULL,
    state          TEXT NOT NULL,
    zjlx           TEXT,
    zjhm           TEXT,
    holder_rybs    TEXT,
    holder_xm      TEXT,
    holder_gmsfhm  TEXT,
    unit           TEXT,
    sbxlh          TEXT,
    zjgxlh         TEXT,
    drawer_row     INTEGER,
    drawer_col     INTEGER,
    planned_return TEXT,
    PRIMARY KEY (generation, zjbs)
) STRICT;
CREATE INDEX view_documents_unit ON view_documents (generation, unit);
CREATE INDEX view_documents_holder ON view_documents (generation, holder_rybs);
CREATE INDEX view_documents_cabinet ON view_documents (generation, sbxlh);

CREATE TABLE view_persons
(
    generation INTEGER NOT NULL,
    rybs       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    aggregate  TEXT NOT NULL,
    state      TEXT NOT NULL,
    xm         TEXT,
    gmsfhm     TEXT,
    unit       TEXT,
    PRIMARY KEY (generation, rybs)
) STRICT;

CREATE TABLE view_cabinets
(
    generation INTEGER NOT NULL,
    sbxlh      TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    aggregate  TEXT NOT NULL,
    state      TEXT NOT NULL,
    unit       TEXT,
    PRIMARY KEY (generation, sbxlh)
) STRICT;

-- 存取记录: one row per deposit, withdrawal or reconciliation correction.
CREATE TABLE view_access_records
(
    generation     INTEGER NOT NULL,
    zjbs           TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    unit           TEXT NOT NULL,
    sbxlh          TEXT NOT NULL,
    zjgxlh         TEXT NOT NULL,
    drawer_row     INTEGER NOT NULL,
    drawer_col     INTEGER NOT NULL,
    ywlsh          TEXT,
    operated_at    TEXT NOT NULL,
    operated_ms    INTEGER NOT NULL,
    destination    TEXT,
    planned_return TEXT,
    anomaly        TEXT,
    PRIMARY KEY (generation, zjbs, sequence)
) STRICT;
CREATE INDEX view_access_records_time ON view_access_records (generation, operated_ms);

-- Anomalies and device alarms (rejected reports are read from their own log).
CREATE TABLE view_alerts
(
    generation     INTEGER NOT NULL,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    kind           TEXT NOT NULL,
    unit           TEXT,
    detail         TEXT NOT NULL,
    raised_at      TEXT NOT NULL,
    raised_ms      INTEGER NOT NULL,
    PRIMARY KEY (generation, aggregate_type, aggregate_id, sequence, kind)
) STRICT;

-- Every read of personal data (SPEC §7, §2.6.5.4.2).
CREATE TABLE query_audit
(
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms    INTEGER NOT NULL,
    token_id TEXT NOT NULL,
    org      TEXT,
    path     TEXT NOT NULL,
    subjects TEXT NOT NULL
) STRICT;
