-- The stats projection's roll-up per org node (docs/department-page.md, "Statistics"): the
-- counters of migration 0011 are kept per unit; these tables keep them again per org node, for
-- the node's whole subtree (the unit itself and every unit below it), so that a subtree's
-- statistics read its root's rows instead of adding up every unit's.
--
-- Each unit's placement is decided once per generation, when the projection first counts it:
-- a unit in the org tree adds its deltas to itself and to each of its ancestors (`placed` = 1);
-- a unit not in the tree yet (its org registered later) adds them to itself only (`placed` = 0),
-- and readers add such units' own rows (0011's tables) to the roots' for the scopes they are in.
-- The org tree only grows (a node's parent is fixed when it is made), so a placement stays right.
CREATE TABLE view_stats_units
(
    generation bigint   NOT NULL,
    unit       text     NOT NULL,
    placed     smallint NOT NULL,
    ancestors  text     NOT NULL, -- the nodes above, nearest first, comma-separated
    PRIMARY KEY (generation, unit)
);
CREATE INDEX view_stats_units_unplaced ON view_stats_units (generation, unit) WHERE placed = 0;

CREATE TABLE view_stats_node_states
(
    generation bigint NOT NULL,
    node       text   NOT NULL,
    state      text   NOT NULL,
    n          bigint NOT NULL,
    PRIMARY KEY (generation, node, state) INCLUDE (n)
);

CREATE TABLE view_stats_node_due
(
    generation     bigint NOT NULL,
    node           text   NOT NULL,
    planned_return text   NOT NULL, -- YYYY-MM-DD
    n              bigint NOT NULL,
    PRIMARY KEY (generation, node, planned_return) INCLUDE (n)
);

CREATE TABLE view_stats_node_withdrawals
(
    generation bigint NOT NULL,
    node       text   NOT NULL,
    day        text   NOT NULL, -- YYYY-MM-DD
    n          bigint NOT NULL,
    PRIMARY KEY (generation, node, day) INCLUDE (n)
);

CREATE TABLE view_stats_node_destinations
(
    generation  bigint NOT NULL,
    node        text   NOT NULL,
    destination text   NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (generation, node, destination) INCLUDE (n)
);

-- The destinations page's counts (docs/department-page.md, "Destinations"): withdrawals with a
-- declared destination per unit, China-time day, destination and holder (RYBS, '' if none), so
-- that a period's ranking and each holder's trips are summed from these rows rather than counted
-- from every access record joined with its document.
CREATE TABLE view_stats_trips
(
    generation  bigint NOT NULL,
    unit        text   NOT NULL,
    day         text   NOT NULL, -- YYYY-MM-DD
    destination text   NOT NULL,
    holder_rybs text   NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (generation, unit, day, destination, holder_rybs) INCLUDE (n)
);

-- The cabinets page's drawer occupancy (docs/benchmarks.md, "Department page"), from an index
-- that holds every column its statement reads, so that no document row (it carries the
-- serialised aggregate) is read; it also serves what the index it replaces did.
DROP INDEX view_documents_cabinet;
CREATE INDEX view_documents_occupancy
    ON view_documents (generation, sbxlh, state, zjgxlh, drawer_row, drawer_col);

-- What 0011 counted has no roll-up: the projection starts again from the first event (its
-- projector finds no row in `projections` and replays the log into generation 1).
DELETE FROM view_stats_documents;
DELETE FROM view_stats_states;
DELETE FROM view_stats_due;
DELETE FROM view_stats_withdrawals;
DELETE FROM view_stats_destinations;
DELETE FROM projection_positions WHERE projection = 'stats';
DELETE FROM projections WHERE name = 'stats';
