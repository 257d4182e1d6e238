-- The reconciliation results become a projection like the other views (docs/reconciliation.md,
-- docs/architecture.md "The read side"): built from the Reconciliation events by the
-- `reconciliations` projector, with generations and rebuilds. The old tables were written by
-- the HTTP edge; they are derived data, so they are dropped and the projector, starting from
-- the beginning of the log, fills the new ones.
DROP TABLE reconciliation_deviations;
DROP TABLE reconciliations;

-- One row per Reconciliation aggregate (`<sbxlh>:<YYYYMMDD>`): the aggregate itself, for the
-- projector to apply the next event to, and the summary readers list. Readers take `Reconciled`
-- rows only: a diff whose repairs are not recorded yet is no result.
CREATE TABLE view_reconciliations
(
    generation          bigint NOT NULL,
    id                  text   NOT NULL,
    version             bigint NOT NULL,
    updated_at          text   NOT NULL,
    aggregate           text   NOT NULL,
    state               text   NOT NULL,
    sbxlh               text,
    business_date       text, -- YYYY-MM-DD
    dzywlsh             text,
    unit                text,
    received_at         text,
    as_of               text,
    documents_reported  bigint,
    operations_reported bigint,
    state_deviations    bigint,
    unrepaired          bigint,
    log_deviations      bigint,
    PRIMARY KEY (generation, id)
);
CREATE INDEX view_reconciliations_date ON view_reconciliations (generation, business_date, sbxlh);

-- The two deviation tables of the design (证件状态偏离, 操作日志偏离), one row per deviation in
-- the order of the diff, written once the reconciliation's repairs are recorded: `kind` 'state'
-- or 'log'; the columns of the other kind are null.
CREATE TABLE view_reconciliation_deviations
(
    generation     bigint NOT NULL,
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
    PRIMARY KEY (generation, sbxlh, business_date, position)
);
