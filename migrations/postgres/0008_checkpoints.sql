-- Tamper evidence beyond the per-aggregate chain (docs/audit.md): the Merkle tree over the log
-- in commit order and the signed checkpoints of its root. Rows are only ever inserted.

-- One row per event sealed into the tree, in tree order: the leaf hash (hex of
-- SM3(0x00 ‖ event hash)) and which event it was, so that proofs need not re-read events and an
-- auditor can tell an altered event from a removed, inserted or reordered one.
CREATE TABLE merkle_leaves
(
    tree_index     bigint PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint NOT NULL,
    global_position bigint NOT NULL,
    leaf_hash      text NOT NULL
);

-- Signed checkpoints; frontier (the right edge, hex, comma-separated) and the commit position of
-- the last sealed event let the next checkpoint hash only the new events.
CREATE TABLE checkpoints
(
    tree_size     bigint PRIMARY KEY,
    root_hash     text NOT NULL,
    signed_at     text NOT NULL,
    signature     text NOT NULL,
    frontier      text NOT NULL,
    last_tx_id    text NOT NULL,
    last_position bigint NOT NULL,
    created_ms    bigint NOT NULL
);
