-- Tamper evidence beyond the per-aggregate chain (docs/audit.md): the Merkle tree over the log
-- in commit order and the signed checkpoints of its root. Rows are only ever inserted.

-- One row per event sealed into the tree, in tree order: the leaf hash (hex of
-- SM3(0x00 ‖ event hash)) and which event it was, so that proofs need not re-read events and an
-- auditor can tell an altered event from a removed, inserted or reordered one.
CREATE TABLE merkle_leaves
(
    tree_index     INTEGER PRIMARY KEY,
    aggregate_type TEXT NOT NULL,
    aggregate_id   TEXT NOT NULL,
    sequence       INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    leaf_hash      TEXT NOT NULL
) STRICT;

-- Signed checkpoints; frontier (the right edge, hex, comma-separated) and the commit position of
-- the last sealed event let the next checkpoint hash only the new events.
CREATE TABLE checkpoints
(
    tree_size     INTEGER PRIMARY KEY,
    root_hash     TEXT NOT NULL,
    signed_at     TEXT NOT NULL,
    signature     TEXT NOT NULL,
    frontier      TEXT NOT NULL,
    last_tx_id    TEXT NOT NULL,
    last_position INTEGER NOT NULL,
    created_ms    INTEGER NOT NULL
) STRICT;
