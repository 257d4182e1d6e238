//! The Merkle tree over the log and its signed checkpoints (`migrations/*/0008_checkpoints.sql`,
//! docs/audit.md). Sealing hashes only the events after the latest checkpoint, from its stored
//! frontier, and writes their leaves, the perfect subtrees they complete (`merkle_nodes`,
//! `migrations/*/0010_merkle_nodes.sql`) and the new checkpoint in one transaction. Proofs read
//! only the O(log n) stored subtrees they are made of ([`merkle::ProofPlan`]).

use custody_audit::bundle::{
    json_line, Bundle, BundleEnd, BundleEvent, BundleHeader, BundleLeaf, BundleLine,
    ConsistencyProof, BUNDLE_FORMAT,
};
use std::collections::HashMap;

use custody_audit::merkle::{self, Frontier, Hash, NodeId, ProofPlan};
use custody_audit::reseal::ResealEntry;
use custody_audit::{parse_hash, Checkpoint, SignedCheckpoint};
use custody_protocol::sm2sig::Sm2Signer;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{CommitPosition, CommittedEvent, EventLog, EventLogError};

/// Events read per round trip while sealing or exporting.
const BATCH: usize = 1000;

/// Rows written per INSERT while sealing: one statement per row made sealing 1,000,000 events
/// mostly round trips; 500 leaves are 3,000 parameters, far below either store's limit.
const INSERT_ROWS: usize = 500;

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

/// The PostgreSQL advisory lock key of sealing (the bytes of "custody\x01"). The relays' keys
/// are FNV-1a hashes of stream names (projections/src/relay.rs): a collision would only make
/// a seal wait for a relay.
const SEALING_LOCK: i64 = 0x6375_7374_6f64_7901;

/// What one attempt at sealing came to.
enum Sealing {
    Done(Option<SignedCheckpoint>),
    /// Another sealer wrote a checkpoint first: start again from it.
    Raced,
}

const CHECKPOINT_COLUMNS: &str = "tree_size, root_hash, signed_at, signature";

const LEAF_COLUMNS: &str =
    "tree_index, aggregate_type, aggregate_id, sequence, global_position, leaf_hash";

impl EventLog {
    /// Seals the events committed since the latest checkpoint into a new one signed by
    /// `signer` at `timestamp` (RFC 3339). None when the log has not grown.
    pub async fn seal(
        &self,
        signer: &Sm2Signer,
        timestamp: &str,
        now_ms: i64,
    ) -> Result<Option<SignedCheckpoint>, EventLogError> {
        loop {
            if let Sealing::Done(sealed) = self.try_seal(signer, timestamp, now_ms).await? {
                return Ok(sealed);
            }
        }
    }

    /// One attempt: reads and hashes without holding anything, then writes under the sealing
    /// guard, unless another sealer (another instance) wrote a checkpoint meanwhile.
    async fn try_seal(
        &self,
        signer: &Sm2Signer,
        timestamp: &str,
        now_ms: i64,
    ) -> Result<Sealing, EventLogError> {
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
        let base = frontier.size();
        let mut nodes = self.missing_nodes(frontier.size()).await?;
        let mut new_leaves = Vec::new();
        loop {
            let batch = self.read_committed(last, BATCH).await?;
            let Some(end) = batch.last().map(|e| e.commit) else {
                break;
            };
            for committed in batch {
                let event = bundle_event(committed);
                let leaf = event.leaf();
                frontier.push_recording(leaf, |id, hash| nodes.push((id, *hash)));
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
            if !nodes.is_empty() {
                let Some(mut tx) = self.sealing_guard(base).await? else {
                    return Ok(Sealing::Raced);
                };
                insert_nodes(&mut tx, &nodes).await?;
                tx.commit().await?;
            }
            return Ok(Sealing::Done(None));
        }
        let checkpoint = Checkpoint {
            tree_size: frontier.size(),
            root_hash: frontier.root(),
            timestamp: timestamp.to_string(),
        };
        let signed = checkpoint.sign(signer)?;
        let Some(mut tx) = self.sealing_guard(base).await? else {
            return Ok(Sealing::Raced);
        };
        for chunk in new_leaves.chunks(INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO merkle_leaves (tree_index, aggregate_type, aggregate_id, sequence, \
                 global_position, leaf_hash) VALUES {}",
                values(chunk.len(), 6)
            );
            let mut query = sqlx::query(&sql);
            for leaf in chunk {
                query = query
                    .bind(to_i64(leaf.tree_index))
                    .bind(&leaf.aggregate_type)
                    .bind(&leaf.aggregate_id)
                    .bind(leaf.sequence)
                    .bind(leaf.global_position)
                    .bind(&leaf.leaf_hash);
            }
            query.execute(&mut *tx).await?;
        }
        insert_nodes(&mut tx, &nodes).await?;
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
        Ok(Sealing::Done(Some(signed)))
    }

    /// The transaction that writes a seal, holding the store's sealing guard: on PostgreSQL a
    /// transaction-scoped advisory lock, on SQLite the single writer's lock (taken by a write
    /// that changes nothing). None, and nothing held, when the latest checkpoint is no longer
    /// the tree of `base` leaves the seal was computed from.
    async fn sealing_guard(
        &self,
        base: u64,
    ) -> Result<Option<sqlx::Transaction<'static, sqlx::Any>>, EventLogError> {
        let mut tx = self.platform().pool().begin().await?;
        match self.backend() {
            // COUNT: the Any driver has no type for pg_advisory_xact_lock's void.
            crate::Backend::Postgres(_) => {
                sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS sealing")
                    .bind(SEALING_LOCK)
                    .execute(&mut *tx)
                    .await?
            }
            crate::Backend::Sqlite(_) => {
                sqlx::query("DELETE FROM merkle_nodes WHERE level < 0")
                    .execute(&mut *tx)
                    .await?
            }
        };
        let latest: Option<i64> = sqlx::query("SELECT MAX(tree_size) AS size FROM checkpoints")
            .fetch_one(&mut *tx)
            .await?
            .try_get("size")?;
        Ok((latest.map_or(0, i64::unsigned_abs) == base).then_some(tx))
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
        sqlx::query(&format!(
            "SELECT {LEAF_COLUMNS} FROM merkle_leaves ORDER BY tree_index"
        ))
        .fetch_all(self.platform().pool())
        .await?
        .iter()
        .map(bundle_leaf)
        .collect()
    }

    /// The proof that the event at `global_position` is in the tree of `size` leaves.
    pub async fn inclusion_proof(
        &self,
        global_position: i64,
        size: u64,
    ) -> Result<InclusionProof, EventLogError> {
        // A row written behind the platform's back may repeat a position: the first in tree
        // order is the one named, as the bundle's verifier would.
        let row = sqlx::query(&format!(
            "SELECT {LEAF_COLUMNS} FROM merkle_leaves WHERE global_position = $1 \
             ORDER BY tree_index LIMIT 1"
        ))
        .bind(global_position)
        .fetch_optional(self.platform().pool())
        .await?;
        let leaf = row
            .as_ref()
            .map(bundle_leaf)
            .transpose()?
            .ok_or(EventLogError::NotSealed)?;
        let plan = ProofPlan::inclusion(leaf.tree_index, size)?;
        self.check_sealed(size).await?;
        let nodes = self.node_hashes(&plan, &[size]).await?;
        Ok(InclusionProof {
            root_hash: stored_root(size, &nodes)?,
            proof: assemble(&plan, &nodes)?,
            leaf,
            tree_size: size,
        })
    }

    /// The proof that the tree of `to` leaves extends the tree of `from` leaves.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Consistency, EventLogError> {
        let plan = ProofPlan::consistency(from, to)?;
        self.check_sealed(to).await?;
        let nodes = self.node_hashes(&plan, &[from, to]).await?;
        Ok(Consistency {
            from,
            to,
            from_root: stored_root(from, &nodes)?,
            to_root: stored_root(to, &nodes)?,
            proof: assemble(&plan, &nodes)?,
        })
    }

    /// `TooFewLeaves` unless `size` leaves are sealed (the highest tree index, by its key).
    async fn check_sealed(&self, size: u64) -> Result<(), EventLogError> {
        let top: Option<i64> = sqlx::query("SELECT MAX(tree_index) AS top FROM merkle_leaves")
            .fetch_one(self.platform().pool())
            .await?
            .try_get("top")?;
        let have = top.map_or(0, |top| top.unsigned_abs() + 1);
        if size > have {
            return Err(custody_audit::ProofError::TooFewLeaves { have, want: size }.into());
        }
        Ok(())
    }

    /// The stored perfect subtrees a proof needs, and those of the roots of `sizes`: leaves
    /// from `merkle_leaves`, the rest from `merkle_nodes`, one query each.
    async fn node_hashes(
        &self,
        plan: &ProofPlan,
        sizes: &[u64],
    ) -> Result<HashMap<NodeId, Hash>, EventLogError> {
        let mut ids = plan.nodes();
        for &size in sizes {
            ids.extend(
                merkle::Subtree {
                    start: 0,
                    end: size,
                }
                .parts(),
            );
        }
        ids.sort_unstable();
        ids.dedup();
        let (leaves, inner): (Vec<NodeId>, Vec<NodeId>) =
            ids.into_iter().partition(|id| id.level == 0);
        let pool = self.platform().pool();
        let mut found = HashMap::new();
        if !leaves.is_empty() {
            let placeholders: Vec<String> = (1..=leaves.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT tree_index, leaf_hash FROM merkle_leaves WHERE tree_index IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for id in &leaves {
                query = query.bind(to_i64(id.index));
            }
            for row in query.fetch_all(pool).await? {
                let index = row.try_get::<i64, _>("tree_index")?.unsigned_abs();
                let hash: String = row.try_get("leaf_hash")?;
                found.insert(NodeId { level: 0, index }, stored_hash(&hash, "leaf hash")?);
            }
        }
        if !inner.is_empty() {
            let pairs: Vec<String> = (0..inner.len())
                .map(|i| format!("(level = ${} AND node_index = ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT level, node_index, hash FROM merkle_nodes WHERE {}",
                pairs.join(" OR ")
            );
            let mut query = sqlx::query(&sql);
            for id in &inner {
                query = query.bind(i64::from(id.level)).bind(to_i64(id.index));
            }
            for row in query.fetch_all(pool).await? {
                let level = u32::try_from(row.try_get::<i64, _>("level")?)
                    .map_err(|_| EventLogError::BadStoredTree("merkle node level"))?;
                let index = row.try_get::<i64, _>("node_index")?.unsigned_abs();
                let hash: String = row.try_get("hash")?;
                found.insert(
                    NodeId { level, index },
                    stored_hash(&hash, "merkle node hash")?,
                );
            }
        }
        Ok(found)
    }

    /// The perfect subtrees above the leaves of a tree of `size` leaves sealed before
    /// `merkle_nodes` existed (migration 0010), rebuilt from the stored leaves; none when they
    /// are stored. They are written with the next seal. Nodes are written only with the leaves
    /// that complete them, so the first one, (1, 0), is there exactly when all are.
    async fn missing_nodes(&self, size: u64) -> Result<Vec<(NodeId, Hash)>, EventLogError> {
        if size < 2 {
            return Ok(Vec::new());
        }
        let pool = self.platform().pool();
        let first = sqlx::query("SELECT hash FROM merkle_nodes WHERE level = 1 AND node_index = 0")
            .fetch_optional(pool)
            .await?;
        if first.is_some() {
            return Ok(Vec::new());
        }
        let mut nodes = Vec::new();
        let mut frontier = Frontier::default();
        while frontier.size() < size {
            let rows = sqlx::query(
                "SELECT tree_index, leaf_hash FROM merkle_leaves WHERE tree_index >= $1 \
                 ORDER BY tree_index LIMIT $2",
            )
            .bind(to_i64(frontier.size()))
            .bind(to_i64(BATCH as u64))
            .fetch_all(pool)
            .await?;
            if rows.is_empty() {
                return Err(EventLogError::BadStoredTree("sealed leaves missing"));
            }
            for row in rows {
                let index = row.try_get::<i64, _>("tree_index")?.unsigned_abs();
                if index != frontier.size() {
                    return Err(EventLogError::BadStoredTree("sealed leaves missing"));
                }
                if index >= size {
                    break;
                }
                let hash: String = row.try_get("leaf_hash")?;
                frontier.push_recording(stored_hash(&hash, "leaf hash")?, |id, hash| {
                    nodes.push((id, *hash))
                });
            }
        }
        Ok(nodes)
    }

    /// The consistency proof from each checkpoint to the next, from the stored subtrees. A
    /// proof the store cannot give (a damaged tree) is empty: the verifier then says which pair
    /// is unproven.
    pub async fn consistency_proofs(
        &self,
        checkpoints: &[SignedCheckpoint],
    ) -> Result<Vec<ConsistencyProof>, EventLogError> {
        let mut proofs = Vec::new();
        for pair in checkpoints.windows(2) {
            let (from, to) = (pair[0].tree_size, pair[1].tree_size);
            if from == 0 {
                continue;
            }
            let proof = match self.consistency_proof(from, to).await {
                Ok(consistency) => consistency.proof.iter().map(hex).collect(),
                Err(EventLogError::Database(error)) => return Err(EventLogError::Database(error)),
                Err(_) => Vec::new(),
            };
            proofs.push(ConsistencyProof { from, to, proof });
        }
        Ok(proofs)
    }

    /// The first lines of a bundle file: its header, every checkpoint and the consistency
    /// proofs, with their count. [`EventLog::audit_walk`] gives the rest.
    pub async fn audit_bundle_opening(
        &self,
        public_key_pem: &str,
    ) -> Result<(Vec<u8>, BundleEnd), EventLogError> {
        let checkpoints = self.checkpoints().await?;
        let consistency = self.consistency_proofs(&checkpoints).await?;
        let mut opening = json_line(&BundleHeader {
            format: BUNDLE_FORMAT.to_string(),
            public_key_pem: public_key_pem.to_string(),
        });
        let mut end = BundleEnd::default();
        let lines = checkpoints
            .into_iter()
            .map(BundleLine::Checkpoint)
            .chain(consistency.into_iter().map(BundleLine::Consistency));
        for line in lines {
            end.count(&line);
            opening.extend(json_line(&line));
        }
        Ok((opening, end))
    }

    /// Where to start reading what a bundle holds after its checkpoints and proofs
    /// (docs/audit.md, "Bundle"): every resealed event's entry, every stored leaf in tree
    /// order, then every event committed by now, in commit order, a page at a time
    /// ([`AuditWalk::next_page`]).
    pub async fn audit_walk(&self) -> Result<AuditWalk, EventLogError> {
        Ok(AuditWalk {
            head: self.committed_head().await?,
            stage: Stage::Resealed {
                after: (i64::MIN, i64::MIN),
            },
        })
    }

    /// The whole bundle in memory ([`EventLog::audit_walk`] streams it instead): for tests
    /// and small logs.
    pub async fn audit_bundle(&self, public_key_pem: &str) -> Result<Bundle, EventLogError> {
        let checkpoints = self.checkpoints().await?;
        let consistency = self.consistency_proofs(&checkpoints).await?;
        let (mut resealed, mut leaves, mut events) = (Vec::new(), Vec::new(), Vec::new());
        let mut walk = self.audit_walk().await?;
        while let Some(page) = walk.next_page(self).await? {
            match page {
                AuditPage::Resealed(page) => resealed.extend(page),
                AuditPage::Leaves(page) => leaves.extend(page),
                AuditPage::Events(page) => events.extend(page),
            }
        }
        Ok(Bundle {
            format: BUNDLE_FORMAT.to_string(),
            public_key_pem: public_key_pem.to_string(),
            checkpoints,
            consistency,
            resealed,
            leaves,
            events,
        })
    }
}

/// A page of an [`AuditWalk`].
pub enum AuditPage {
    Resealed(Vec<ResealEntry>),
    Leaves(Vec<BundleLeaf>),
    Events(Vec<BundleEvent>),
}

impl AuditPage {
    /// The page as bundle file lines, counted into `end`.
    pub fn into_lines(self, end: &mut BundleEnd) -> Vec<u8> {
        let lines: Vec<BundleLine> = match self {
            AuditPage::Resealed(entries) => entries.into_iter().map(BundleLine::Resealed).collect(),
            AuditPage::Leaves(leaves) => leaves.into_iter().map(BundleLine::Leaf).collect(),
            AuditPage::Events(events) => events.into_iter().map(BundleLine::Event).collect(),
        };
        let mut chunk = Vec::new();
        for line in &lines {
            end.count(line);
            chunk.extend(json_line(line));
        }
        chunk
    }
}

/// A cursor over the leaves and then the events of the log, a page at a time: it holds one page.
pub struct AuditWalk {
    /// The events committed when the walk began; later ones are left for the next walk.
    head: Option<CommitPosition>,
    stage: Stage,
}

enum Stage {
    Resealed { after: (i64, i64) },
    Leaves { after: i64 },
    Events { last: CommitPosition },
    Done,
}

impl AuditWalk {
    /// The next page, or `None` at the end.
    pub async fn next_page(&mut self, log: &EventLog) -> Result<Option<AuditPage>, EventLogError> {
        loop {
            match self.stage {
                Stage::Resealed { after } => {
                    let entries = log.resealed_entries(after, to_i64(BATCH as u64)).await?;
                    match entries.last() {
                        Some(last) => {
                            self.stage = Stage::Resealed {
                                after: (last.run, last.global_position),
                            };
                            return Ok(Some(AuditPage::Resealed(entries)));
                        }
                        None => self.stage = Stage::Leaves { after: -1 },
                    }
                }
                Stage::Leaves { after } => {
                    let leaves: Vec<BundleLeaf> = sqlx::query(&format!(
                        "SELECT {LEAF_COLUMNS} FROM merkle_leaves WHERE tree_index > $1 \
                         ORDER BY tree_index LIMIT $2"
                    ))
                    .bind(after)
                    .bind(to_i64(BATCH as u64))
                    .fetch_all(log.platform().pool())
                    .await?
                    .iter()
                    .map(bundle_leaf)
                    .collect::<Result<_, _>>()?;
                    match leaves.last() {
                        Some(last) => {
                            self.stage = Stage::Leaves {
                                after: to_i64(last.tree_index),
                            };
                            return Ok(Some(AuditPage::Leaves(leaves)));
                        }
                        None => {
                            self.stage = Stage::Events {
                                last: BEFORE_EVERY_ROW,
                            }
                        }
                    }
                }
                Stage::Events { last } => {
                    let Some(head) = self.head.filter(|head| last < *head) else {
                        self.stage = Stage::Done;
                        continue;
                    };
                    let batch = log.read_committed(last, BATCH).await?;
                    let Some(end) = batch.last().map(|e| e.commit) else {
                        self.stage = Stage::Done;
                        continue;
                    };
                    self.stage = Stage::Events { last: end };
                    let events = batch
                        .into_iter()
                        .filter(|e| e.commit <= head)
                        .map(bundle_event)
                        .collect();
                    return Ok(Some(AuditPage::Events(events)));
                }
                Stage::Done => return Ok(None),
            }
        }
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

fn bundle_leaf(row: &AnyRow) -> Result<BundleLeaf, EventLogError> {
    Ok(BundleLeaf {
        tree_index: row.try_get::<i64, _>("tree_index")?.unsigned_abs(),
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        global_position: row.try_get("global_position")?,
        leaf_hash: row.try_get("leaf_hash")?,
    })
}

fn stored_hash(text: &str, what: &'static str) -> Result<Hash, EventLogError> {
    parse_hash(text).ok_or(EventLogError::BadStoredTree(what))
}

/// A subtree the proof needs is not stored: the tree is damaged (or was sealed by a version
/// that wrote no nodes and has not sealed since).
const MISSING_NODE: EventLogError = EventLogError::BadStoredTree("merkle node missing");

fn assemble(plan: &ProofPlan, nodes: &HashMap<NodeId, Hash>) -> Result<Vec<Hash>, EventLogError> {
    plan.assemble(|id| nodes.get(&id).copied())
        .ok_or(MISSING_NODE)
}

fn stored_root(size: u64, nodes: &HashMap<NodeId, Hash>) -> Result<Hash, EventLogError> {
    merkle::root_from_nodes(size, |id| nodes.get(&id).copied()).ok_or(MISSING_NODE)
}

/// `($1, $2), ($3, $4)` for two rows of two columns.
fn values(rows: usize, width: usize) -> String {
    let row = |r: usize| {
        let columns: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
        format!("({})", columns.join(", "))
    };
    (0..rows).map(row).collect::<Vec<_>>().join(", ")
}

async fn insert_nodes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    nodes: &[(NodeId, Hash)],
) -> Result<(), EventLogError> {
    for chunk in nodes.chunks(INSERT_ROWS) {
        let sql = format!(
            "INSERT INTO merkle_nodes (level, node_index, hash) VALUES {}",
            values(chunk.len(), 3)
        );
        let mut query = sqlx::query(&sql);
        for (id, hash) in chunk {
            query = query
                .bind(i64::from(id.level))
                .bind(to_i64(id.index))
                .bind(hex(hash));
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
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
