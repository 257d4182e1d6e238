-- The stats projection (docs/department-page.md, "Statistics"; docs/architecture.md, "The read
-- side"): the counts `GET /api/v1/stats` and the page's overview show, kept per unit (org node)
-- and day by the `stats` projector from the Document events, with generations like every view,
-- so that a subtree's statistics add up a few rows per unit instead of scanning the views.
-- The counters are WITHOUT ROWID tables: clustered by their key, a unit's rows are read together.
-- Counters are changed by deltas (`n = n + excluded.n`): a row may hold 0 after a decrement.

-- What the counters know of each document: its contribution, to take back when it changes.
-- `unit` is the unit whose cabinet last held it; a document no cabinet held yet (NULL) counts
-- for its holder's unit, which readers take from the persons view (the scan's COALESCE).
CREATE TABLE view_stats_documents
(
    generation     INTEGER NOT NULL,
    zjbs           TEXT   NOT NULL,
    state          TEXT   NOT NULL,
    unit           TEXT,
    holder_rybs    TEXT,
    planned_return TEXT, -- YYYY-MM-DD
    PRIMARY KEY (generation, zjbs)
) STRICT;
CREATE INDEX view_stats_documents_unitless ON view_stats_documents (generation, holder_rybs)
    WHERE unit IS NULL;

-- Documents held by a unit, by state.
CREATE TABLE view_stats_states
(
    generation INTEGER NOT NULL,
    unit       TEXT   NOT NULL,
    state      TEXT   NOT NULL,
    n          INTEGER NOT NULL,
    PRIMARY KEY (generation, unit, state)
) STRICT, WITHOUT ROWID;

-- Documents due back (AwaitingReturn) by their planned return date: overdue on a day = the sum
-- over the dates before it (custody_domain::reminder::is_overdue).
CREATE TABLE view_stats_due
(
    generation     INTEGER NOT NULL,
    unit           TEXT   NOT NULL,
    planned_return TEXT   NOT NULL, -- YYYY-MM-DD
    n              INTEGER NOT NULL,
    PRIMARY KEY (generation, unit, planned_return)
) STRICT, WITHOUT ROWID;

-- Withdrawals (lend, take out, abnormal withdrawal) per unit and China-time day.
CREATE TABLE view_stats_withdrawals
(
    generation INTEGER NOT NULL,
    unit       TEXT   NOT NULL,
    day        TEXT   NOT NULL, -- YYYY-MM-DD
    n          INTEGER NOT NULL,
    PRIMARY KEY (generation, unit, day)
) STRICT, WITHOUT ROWID;

-- Withdrawals' declared destinations per unit, all time (the statistics show their totals;
-- a row per day would make a unit hold hundreds of rows instead of tens).
CREATE TABLE view_stats_destinations
(
    generation  INTEGER NOT NULL,
    unit        TEXT   NOT NULL,
    destination TEXT   NOT NULL,
    n           INTEGER NOT NULL,
    PRIMARY KEY (generation, unit, destination)
) STRICT, WITHOUT ROWID;
