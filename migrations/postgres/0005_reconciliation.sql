-- Nightly reconciliation (SPEC §6, docs/reconciliation.md). Both tables are derived from the
-- Reconciliation aggregate's events (written when a batch is reconciled, re-written from the
-- events by a re-sent batch or at start): the event store stays the record.

-- One row per cabinet and business date that was reconciled.
CREATE TABLE reconciliations
(
    sbxlh               text   NOT NULL,
    business_date       text   NOT NULL, -- YYYY-MM-DD
    dzywlsh             text   NOT NULL,
    unit                text   NOT NULL,
    received_at         text   NOT NULL,
    as_of               text   NOT NULL,
    documents_reported  bigint NOT NULL,
    operations_reported bigint NOT NULL,
    state_deviations    bigint NOT NULL,
    unrepaired          bigint NOT NULL,
    log_deviations      bigint NOT NULL,
    PRIMARY KEY (sbxlh, business_date)
);
CREATE INDEX reconciliations_date ON reconciliations (business_date);

-- The two deviation tables of the design (证件状态偏离, 操作日志偏离), one row per deviation in
-- the order of the diff: `kind` 'state' or 'log'; the columns of the other kind are null.
CREATE TABLE reconciliation_deviations
(
    sbxlh          text   NOT NULL,
    business_date  text   NOT NULL,
    position       bigint NOT NULL,
    kind           text   NOT NULL CHECK (kind IN ('state', 'log')),
    zjbs           text,
    holder_rybs    text,
    holder_name    text,
    unit           text,
    cabinet_state  text,
    zjgxlh         text,
    drawer_row     bigint,
    drawer_col     bigint,
    platform_state text,
    platform_sbxlh text,
    reason         text,
    repaired       bigint,
    ywlsh          text,
    side           text,
    operation      text,
    operated_at    text,
    note           text,
    PRIMARY KEY (sbxlh, business_date, position)
);

-- Cabinets that had not uploaded a business date's batch when its window closed.
CREATE TABLE reconciliation_missing
(
    sbxlh         text   NOT NULL,
    business_date text   NOT NULL,
    unit          text,
    detected_ms   bigint NOT NULL,
    PRIMARY KEY (sbxlh, business_date)
);

-- The diff reads every document operation one cabinet sent (metadata `ei`).
CREATE INDEX events_sender ON events ((metadata ->> 'ei'), aggregate_type);
