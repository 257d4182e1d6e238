-- The read side (SPEC §7). Every view row carries the generation it belongs to: a rebuild
-- fills generation g+1 while readers keep reading the active one, then swaps in one update.

-- One row per projection: which generation readers see, and how far it has applied the log.
CREATE TABLE projections
(
    name              text PRIMARY KEY,
    active_generation bigint NOT NULL,
    cursor_tx         bigint NOT NULL,
    cursor_position   bigint NOT NULL,
    applied           bigint NOT NULL,
    updated_ms        bigint NOT NULL
);

-- The last sequence of each aggregate a projection has applied: nothing is applied twice and a
-- gap is filled from the event store before the next event.
CREATE TABLE projection_positions
(
    projection     text NOT NULL,
    generation     bigint NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    PRIMARY KEY (projection, generation, aggregate_type, aggregate_id)
);

CREATE TABLE view_documents
(
    generation     bigint NOT NULL,
    zjbs           text NOT NULL,
    version        bigint NOT NULL,
    updated_at     text NOT NULL,
    aggregate      text NOT NULL,
    state          text NOT NULL,
    zjlx           text,
    zjhm           text,
    holder_rybs    text,
    holder_xm      text,
    holder_gmsfhm  text,
    unit           text,
    sbxlh          text,
    zjgxlh         text,
    drawer_row     bigint,
    drawer_col     bigint,
    planned_return text,
    PRIMARY KEY (generation, zjbs)
);
CREATE INDEX view_documents_unit ON view_documents (generation, unit);
CREATE INDEX view_documents_holder ON view_documents (generation, holder_rybs);
CREATE INDEX view_documents_cabinet ON view_documents (generation, sbxlh);

CREATE TABLE view_persons
(
    generation bigint NOT NULL,
    rybs       text NOT NULL,
    version    bigint NOT NULL,
    updated_at text NOT NULL,
    aggregate  text NOT NULL,
    state      text NOT NULL,
    xm         text,
    gmsfhm     text,
    unit       text,
    PRIMARY KEY (generation, rybs)
);

CREATE TABLE view_cabinets
(
    generation bigint NOT NULL,
    sbxlh      text NOT NULL,
    version    bigint NOT NULL,
    updated_at text NOT NULL,
    aggregate  text NOT NULL,
    state      text NOT NULL,
    unit       text,
    PRIMARY KEY (generation, sbxlh)
);

-- 存取记录: one row per deposit, withdrawal or reconciliation correction.
CREATE TABLE view_access_records
(
    generation     bigint NOT NULL,
    zjbs           text NOT NULL,
    sequence       bigint NOT NULL,
    kind           text NOT NULL,
    unit           text NOT NULL,
    sbxlh          text NOT NULL,
    zjgxlh         text NOT NULL,
    drawer_row     bigint NOT NULL,
    drawer_col     bigint NOT NULL,
    ywlsh          text,
    operated_at    text NOT NULL,
    operated_ms    bigint NOT NULL,
    destination    text,
    planned_return text,
    anomaly        text,
    PRIMARY KEY (generation, zjbs, sequence)
);
CREATE INDEX view_access_records_time ON view_access_records (generation, operated_ms);

-- Anomalies and device alarms (rejected reports are read from their own log).
CREATE TABLE view_alerts
(
    generation     bigint NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    kind           text NOT NULL,
    unit           text,
    detail         text NOT NULL,
    raised_at      text NOT NULL,
    raised_ms      bigint NOT NULL,
    PRIMARY KEY (generation, aggregate_type, aggregate_id, sequence, kind)
);

-- Every read of personal data (SPEC §7, §2.6.5.4.2).
CREATE TABLE query_audit
(
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms    bigint NOT NULL,
    token_id text NOT NULL,
    org      text,
    path     text NOT NULL,
    subjects text NOT NULL
);
