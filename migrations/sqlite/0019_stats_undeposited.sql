-- Documents no cabinet has held yet, in the stats projection's counters (docs/department-page.md,
-- "Statistics"). Such a document counts for its holder's unit, which is the Person aggregate's;
-- readers used to count them on every call from `view_stats_documents` joined with the persons
-- view: 216–369 ms for any subtree at 1,000,000 documents, 86 ms for the whole tree
-- (docs/benchmarks.md). Now the projection takes the Person events too, keeps each person's unit
-- here, and counts those documents in their holder's unit's counters (rolled up like the rest),
-- moving them when the holder's unit changes.
CREATE TABLE view_stats_holders
(
    generation INTEGER NOT NULL,
    rybs       TEXT    NOT NULL,
    unit       TEXT    NOT NULL,
    PRIMARY KEY (generation, rybs)
) STRICT, WITHOUT ROWID;

-- Those whose holder has no unit (never filed) count for no unit, as the scan had it, only for
-- the whole tree: by state and planned return ('' for none).
CREATE TABLE view_stats_undeposited
(
    generation     INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    planned_return TEXT    NOT NULL, -- YYYY-MM-DD, '' for none
    n              INTEGER NOT NULL,
    PRIMARY KEY (generation, state, planned_return)
) STRICT, WITHOUT ROWID;

-- The counters so far have none of this: the projection starts again from the first event (as
-- in 0012).
DELETE FROM view_stats_documents;
DELETE FROM view_stats_trips;
DELETE FROM view_stats_states;
DELETE FROM view_stats_due;
DELETE FROM view_stats_withdrawals;
DELETE FROM view_stats_destinations;
DELETE FROM view_stats_units;
DELETE FROM view_stats_node_states;
DELETE FROM view_stats_node_due;
DELETE FROM view_stats_node_withdrawals;
DELETE FROM view_stats_node_destinations;
DELETE FROM projection_positions WHERE projection = 'stats';
DELETE FROM projections WHERE name = 'stats';
