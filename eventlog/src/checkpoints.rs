//! The Merkle tree over the log and its signed checkpoints (`migrations/*/0008_checkpoints.sql`,
//! docs/audit.md). Sealing hashes only the events after the latest checkpoint, from its stored
//! frontier, and writes their leaves and the new checkpoint in one transaction. Proofs read the
//! stored leaf hashes: O(n) per proof.

use custody_audit::bundle::{Bundle, BundleEvent, BundleLeaf, ConsistencyProof, BUNDLE_FORMAT};
use custody_audit::merkle::{self, Frontier, Hash};
use custody_audit::{parse_hash, Checkpoint, SignedCheckpoint};
use custody_protocol::sm2sig::Sm2Signer;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{CommitPosition, CommittedEvent, EventLog, EventLogError};

/// Events read per round trip while sealing or exporting.
const BATCH: usize = 1000;

/// Before every row: a row written behind the platform's back may carry any position (even 0
/// or below, which the feed's [`CommitPosition::START`] would skip), and an audit must see it.
const BEFORE_EVERY_ROW: CommitPosition = CommitPosition {
    tx_id: 0,
    position: i64::MIN,
};

/// An inclusion proof of one event under a tree size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub leaf: BundleLeaf,
    pub tree_size: u64,
    pub root_hash: Hash,
    pub proof: Vec<Hash>,
}

/// A consistency proof between two tree sizes, with both roots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consistency {
    pub from: u64,
    pub to: u64,
    pub from_root: Hash,
    pub to_root: Hash,
    pub proof: Vec<Hash>,
}

const CHECKPOINT_COLUMNS: &str = "tree_size, root_hash, signed_at, signature";

impl EventLog {
    /// Seals the events committed since the latest checkpoint into a new one signed by
    /// `signer` at `timestamp` (RFC 3339). None when the log has not grown.
    pub async fn seal(
        &self,
        signer: &Sm2Signer,
        timestamp: &str,
        now_ms: i64,
    ) -> Result<Option<SignedCheckpoint>, EventLogError> {
        let pool = self.platform().pool();
        let latest = sqlx::query(
            "SELECT tree_size, frontier, last_tx_id, last_position FROM checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(pool)
        .await?;
        let (mut frontier, mut last) = match latest {
            Some(row) => stored_frontier(&row)?,
            None => (Frontier::default(), BEFORE_EVERY_ROW),
        };
        let mut new_leaves = Vec::new();
        loop {
            let batch = self.read_committed(last, BATCH).await?;
            let Some(end) = batch.last().map(|e| e.commit) else {
                break;
            };
            for committed in batch {
                let event = bundle_event(committed);
                let leaf = event.leaf();
                frontier.push(leaf);
                new_leaves.push(BundleLeaf {
                    tree_index: frontier.size() - 1,
                    aggregate_type: event.aggregate_type,
                    aggregate_id: event.aggregate_id,
                    sequence: event.sequence,
                    global_position: event.global_position,
                    leaf_hash: hex(&leaf),
                });
            }
            last = end;
        }
        if new_leaves.is_empty() {
            return Ok(None);
        }
        let checkpoint = Checkpoint {
            tree_size: frontier.size(),
            root_hash: frontier.root(),
            timestamp: timestamp.to_string(),
        };
        let signed = checkpoint.sign(signer)?;
        let mut tx = pool.begin().await?;
        for leaf in &new_leaves {
            sqlx::query(
                "INSERT INTO merkle_leaves (tree_index, aggregate_type, aggregate_id, sequence, \
                 global_position, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(to_i64(leaf.tree_index))
            .bind(&leaf.aggregate_type)
            .bind(&leaf.aggregate_id)
            .bind(leaf.sequence)
            .bind(leaf.global_position)
            .bind(&leaf.leaf_hash)
            .execute(&mut *tx)
            .await?;
        }
        let frontier_text: Vec<String> = frontier.nodes().iter().map(hex).collect();
        sqlx::query(
            "INSERT INTO checkpoints (tree_size, root_hash, signed_at, signature, frontier, \
             last_tx_id, last_position, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(to_i64(signed.tree_size))
        .bind(&signed.root_hash)
        .bind(&signed.timestamp)
        .bind(&signed.signature)
        .bind(frontier_text.join(","))
        .bind(last.tx_id.to_string())
        .bind(last.position)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(signed))
    }

    /// Every checkpoint, by tree size.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, EventLogError> {
        let sql = format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size");
        sqlx::query(&sql)
            .fetch_all(self.platform().pool())
            .await?
            .iter()
            .map(signed_checkpoint)
            .collect()
    }

    /// The latest checkpoint, or the one of tree size `size`.
    pub async fn checkpoint(
        &self,
        size: Option<u64>,
    ) -> Result<Option<SignedCheckpoint>, EventLogError> {
        let pool = self.platform().pool();
        let row = match size {
            None => {
                let sql = format!(
                    "SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"
                );
                sqlx::query(&sql).fetch_optional(pool).await?
            }
            Some(size) => {
                let sql =
                    format!("SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size = $1");
                sqlx::query(&sql)
                    .bind(to_i64(size))
                    .fetch_optional(pool)
                    .await?
            }
        };
        row.as_ref().map(signed_checkpoint).transpose()
    }

    /// The sealed leaves, in tree order.
    pub async fn sealed_leaves(&self) -> Result<Vec<BundleLeaf>, EventLogError> {
        sqlx::query(
            "SELECT tree_index, aggregate_type, aggregate_id, sequence, global_position, \
             leaf_hash FROM merkle_leaves ORDER BY tree_index",
        )
        .fetch_all(self.platform().pool())
        .await?
        .iter()
        .map(|row| {
            Ok(BundleLeaf {
                tree_index: row.try_get::<i64, _>("tree_index")?.unsigned_abs(),
                aggregate_type: row.try_get("aggregate_type")?,
                aggregate_id: row.try_get("aggregate_id")?,
                sequence: row.try_get("sequence")?,
                global_position: row.try_get("global_position")?,
                leaf_hash: row.try_get("leaf_hash")?,
            })
        })
        .collect()
    }

    /// The proof that the event at `global_position` is in the tree of `size` leaves.
    pub async fn inclusion_proof(
        &self,
        global_position: i64,
        size: u64,
    ) -> Result<InclusionProof, EventLogError> {
        let leaves = self.sealed_leaves().await?;
        let leaf = leaves
            .iter()
            .find(|leaf| leaf.global_position == global_position)
            .cloned()
            .ok_or(EventLogError::NotSealed)?;
        let hashes = leaf_hashes(&leaves)?;
        let proof = merkle::inclusion_proof(&hashes, leaf.tree_index, size)?;
        Ok(InclusionProof {
            root_hash: merkle::root(&hashes[..proof_size(size)]),
            leaf,
            tree_size: size,
            proof,
        })
    }

    /// The proof that the tree of `to` leaves extends the tree of `from` leaves.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Consistency, EventLogError> {
        let hashes = leaf_hashes(&self.sealed_leaves().await?)?;
        let proof = merkle::consistency_proof(&hashes, from, to)?;
        Ok(Consistency {
            from,
            to,
            from_root: merkle::root(&hashes[..proof_size(from)]),
            to_root: merkle::root(&hashes[..proof_size(to)]),
            proof,
        })
    }

    /// Everything an offline audit needs (docs/audit.md, "Bundle"): the events in commit
    /// order, the checkpoints with the consistency proof from each to the next, the sealed
    /// leaves and the checkpoint key. Held in memory whole.
    pub async fn audit_bundle(&self, public_key_pem: &str) -> Result<Bundle, EventLogError> {
        let checkpoints = self.checkpoints().await?;
        let leaves = self.sealed_leaves().await?;
        // Stored leaf hashes that no longer parse give no proof; the verifier then says so.
        let hashes = leaf_hashes(&leaves).unwrap_or_default();
        let consistency = checkpoints
            .windows(2)
            .filter(|pair| pair[0].tree_size > 0)
            .map(|pair| ConsistencyProof {
                from: pair[0].tree_size,
                to: pair[1].tree_size,
                proof: merkle::consistency_proof(&hashes, pair[0].tree_size, pair[1].tree_size)
                    .unwrap_or_default()
                    .iter()
                    .map(hex)
                    .collect(),
            })
            .collect();
        let mut events = Vec::new();
        let mut last = BEFORE_EVERY_ROW;
        loop {
            let batch = self.read_committed(last, BATCH).await?;
            let Some(end) = batch.last().map(|e| e.commit) else {
                break;
            };
            events.extend(batch.into_iter().map(bundle_event));
            last = end;
        }
        Ok(Bundle {
            format: BUNDLE_FORMAT.to_string(),
            public_key_pem: public_key_pem.to_string(),
            checkpoints,
            consistency,
            leaves,
            events,
        })
    }
}

fn bundle_event(committed: CommittedEvent) -> BundleEvent {
    let event = committed.event;
    BundleEvent {
        aggregate_type: event.aggregate_type,
        aggregate_id: event.aggregate_id,
        sequence: event.sequence,
        event_type: event.event_type,
        event_version: event.event_version,
        payload: event.payload,
        metadata: event.metadata,
        global_position: event.global_position,
        tx_id: committed.commit.tx_id,
    }
}

fn leaf_hashes(leaves: &[BundleLeaf]) -> Result<Vec<Hash>, EventLogError> {
    leaves
        .iter()
        .map(|leaf| parse_hash(&leaf.leaf_hash).ok_or(EventLogError::BadStoredTree("leaf hash")))
        .collect()
}

/// A size already checked against the leaves by the proof functions.
fn proof_size(size: u64) -> usize {
    usize::try_from(size).unwrap_or(usize::MAX)
}

fn signed_checkpoint(row: &AnyRow) -> Result<SignedCheckpoint, EventLogError> {
    Ok(SignedCheckpoint {
        tree_size: row.try_get::<i64, _>("tree_size")?.unsigned_abs(),
        root_hash: row.try_get("root_hash")?,
        timestamp: row.try_get("signed_at")?,
        signature: row.try_get("signature")?,
    })
}

fn stored_frontier(row: &AnyRow) -> Result<(Frontier, CommitPosition), EventLogError> {
    let size = row.try_get::<i64, _>("tree_size")?.unsigned_abs();
    let text: String = row.try_get("frontier")?;
    let nodes: Option<Vec<Hash>> = text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(parse_hash)
        .collect();
    let frontier = nodes
        .and_then(|nodes| Frontier::from_parts(size, nodes))
        .ok_or(EventLogError::BadStoredTree("checkpoint frontier"))?;
    let tx_id: String = row.try_get("last_tx_id")?;
    let last = CommitPosition {
        tx_id: tx_id
            .parse()
            .map_err(|_| EventLogError::BadStoredTree("checkpoint commit position"))?,
        position: row.try_get("last_position")?,
    };
    Ok((frontier, last))
}

fn hex(hash: &Hash) -> String {
    hex::encode(hash)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
