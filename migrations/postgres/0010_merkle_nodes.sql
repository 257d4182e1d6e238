-- Interior nodes of the Merkle tree (docs/audit.md, "Stored form"), so that a proof reads
-- O(log n) rows instead of every leaf. A row is the hash of the perfect subtree of 2^level
-- leaves starting at leaf node_index * 2^level (level 0 is merkle_leaves), written in the
-- transaction of the checkpoint whose sealing completed it. Rows are only ever inserted. A store
-- sealed before this migration has its nodes backfilled from merkle_leaves on the next seal.
CREATE TABLE merkle_nodes
(
    level      bigint NOT NULL,
    node_index bigint NOT NULL,
    hash       text NOT NULL,
    PRIMARY KEY (level, node_index)
);

-- An inclusion proof starts from the event's position: the first leaf in tree order of it, read
-- from this index alone (with tree_index in it, a planner cannot walk the primary key instead).
CREATE INDEX merkle_leaves_by_position ON merkle_leaves (global_position, tree_index);
