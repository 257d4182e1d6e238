-- The stats projection (docs/department-page.md, "Statistics"; docs/architecture.md, "The read
-- side"): the counts `GET /api/v1/stats` and the page's overview show, kept per unit (org node)
-- and day by the `stats` projector from the Document events, with generations like every view,
-- so that a subtree's statistics add up a few rows per unit instead of scanning the views.
-- Counters are changed by deltas (`n = n + excluded.n`): a row may hold 0 after a decrement.

-- What the counters know of each document: its contribution, to take back when it changes.
-- `unit` is the unit whose cabinet last held it; a document no cabinet held yet (NULL) counts
-- for its holder's unit, which readers take from the persons view (the scan's COALESCE).
CREATE TABLE view_stats_documents
(
    generation     bigint NOT NULL,
    zjbs           text   NOT NULL,
    state          text   NOT NULL,
    unit           text,
    holder_rybs    text,
    planned_return text, -- YYYY-MM-DD
    PRIMARY KEY (generation, zjbs)
);
CREATE INDEX view_stats_documents_unitless ON view_stats_documents (generation, holder_rybs)
    WHERE unit IS NULL;

-- Documents held by a unit, by state.
CREATE TABLE view_stats_states
(
    generation bigint NOT NULL,
    unit       text   NOT NULL,
    state      text   NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (generation, unit, state) INCLUDE (n)
);

-- Documents due back (AwaitingReturn) by their planned return date: overdue on a day = the sum
-- over the dates before it (custody_domain::reminder::is_overdue).
CREATE TABLE view_stats_due
(
    generation     bigint NOT NULL,
    unit           text   NOT NULL,
    planned_return text   NOT NULL, -- YYYY-MM-DD
    n              bigint NOT NULL,
    PRIMARY KEY (generation, unit, planned_return) INCLUDE (n)
);

-- Withdrawals (lend, take out, abnormal withdrawal) per unit and China-time day.
CREATE TABLE view_stats_withdrawals
(
    generation bigint NOT NULL,
    unit       text   NOT NULL,
    day        text   NOT NULL, -- YYYY-MM-DD
    n          bigint NOT NULL,
    PRIMARY KEY (generation, unit, day) INCLUDE (n)
);

-- Withdrawals' declared destinations per unit, all time (the statistics show their totals;
-- a row per day would make a unit hold hundreds of rows instead of tens).
CREATE TABLE view_stats_destinations
(
    generation  bigint NOT NULL,
    unit        text   NOT NULL,
    destination text   NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (generation, unit, destination) INCLUDE (n)
);
