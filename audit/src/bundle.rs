//! The audit bundle (docs/audit.md, "Bundle") and its verification, which needs nothing but
//! the bundle and the checkpoint public key: every checkpoint's signature, each checkpoint
//! consistent with the one before, every aggregate's hash chain, and every event's inclusion
//! under the checkpoints. The first event altered, removed, inserted or reordered is named with
//! the checkpoint that proves it.

use std::collections::{BTreeMap, HashMap, HashSet};

use custody_protocol::sm2sig::Sm2Verifier;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::{event_hash, EventFields, GENESIS_HASH, PREVIOUS_HASH};
use crate::checkpoint::{parse_hash, Checkpoint, SignedCheckpoint};
use crate::merkle::{self, Frontier, Hash};

/// The first line of every bundle.
pub const BUNDLE_FORMAT: &str = "custody-audit-bundle/v1";

/// Everything an offline check needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    /// The checkpoint public key (SubjectPublicKeyInfo PEM), for information: the verifier
    /// uses the key it is given, never this one.
    pub public_key_pem: String,
    /// Every checkpoint, by tree size.
    pub checkpoints: Vec<SignedCheckpoint>,
    /// The consistency proof from each checkpoint to the next.
    pub consistency: Vec<ConsistencyProof>,
    /// The sealed leaves as the store keeps them, in tree order.
    pub leaves: Vec<BundleLeaf>,
    /// Every event with all its stored fields, in commit order.
    pub events: Vec<BundleEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Hex hashes, in RFC 9162 §2.1.4.1 order.
    pub proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLeaf {
    pub tree_index: u64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    pub leaf_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub global_position: i64,
    /// The writing transaction on PostgreSQL (the first half of the commit order); equal to
    /// `global_position` on SQLite.
    pub tx_id: u64,
}

impl BundleEvent {
    /// The event's chain hash (hex).
    pub fn hash(&self) -> String {
        event_hash(EventFields {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            event_version: &self.event_version,
            payload: &self.payload,
            metadata: &self.metadata,
        })
    }

    /// Its Merkle leaf: `SM3(0x00 ‖ the 32 bytes of its chain hash)`.
    pub fn leaf(&self) -> Hash {
        // event_hash always yields 64 hex digits.
        merkle::leaf_hash(&parse_hash(&self.hash()).unwrap_or_default())
    }

    fn id(&self) -> EventId {
        EventId {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
        }
    }
}

/// Which event: its aggregate and sequence.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EventId {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
}

impl BundleLeaf {
    fn id(&self) -> EventId {
        EventId {
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
        }
    }
}

/// What is wrong, most fundamental first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A checkpoint's signature does not verify (or it cannot be read).
    Signature,
    /// A witnessed checkpoint is missing from the store's checkpoints, or differs from the
    /// store's checkpoint of the same tree size.
    Witness,
    /// A checkpoint does not extend the one before it.
    Inconsistent,
    /// An event sealed by a checkpoint was changed.
    Altered,
    /// An event sealed by a checkpoint is gone (including a log cut below a checkpoint).
    Removed,
    /// An event that no checkpoint sealed appears among sealed ones.
    Inserted,
    /// Sealed events are in another order.
    Reordered,
    /// The log no longer has the root a checkpoint signed, and the stored leaves cannot say
    /// which event changed.
    RootMismatch,
    /// An event does not link to the previous one of its aggregate, or a sequence is missing.
    Chain,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The tree size of the checkpoint that proves it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    /// The place in commit order (tree index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tree_index: Option<u64>,
    /// The event, flattened: `aggregate_type`, `aggregate_id`, `sequence`.
    #[serde(flatten)]
    pub event: Option<EventId>,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub verified: bool,
    pub events_checked: u64,
    pub aggregates: u64,
    pub checkpoints: u64,
    /// The latest verified checkpoint's tree size: the events sealed.
    pub sealed: u64,
    /// The first problem found, in the order of [`FindingKind`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<Finding>,
    pub findings: Vec<Finding>,
}

/// Verifies a bundle against the checkpoint key.
pub fn verify(bundle: &Bundle, key: &Sm2Verifier) -> Verdict {
    verify_with_witnesses(bundle, key, &[])
}

/// Verifies a bundle against the checkpoint key and checkpoints a witness kept outside the
/// database: each witnessed checkpoint must be among the bundle's, and the log must reproduce
/// its root too, so deleting or re-signing checkpoints in the store does not hide a change.
pub fn verify_with_witnesses(
    bundle: &Bundle,
    key: &Sm2Verifier,
    witnessed: &[SignedCheckpoint],
) -> Verdict {
    let mut findings = Vec::new();
    let mut checkpoints = verified_checkpoints(&bundle.checkpoints, key, &mut findings);
    let witness_only = merge_witnessed(&mut checkpoints, witnessed, key, &mut findings);
    check_consistency(bundle, &checkpoints, &witness_only, &mut findings);
    let leaves: Vec<Hash> = bundle.events.iter().map(BundleEvent::leaf).collect();
    check_inclusion(bundle, &checkpoints, &leaves, &mut findings);
    let aggregates = check_chains(&bundle.events, &mut findings);
    findings.sort_by_key(|f| (f.kind as u8, f.tree_index.unwrap_or(u64::MAX)));
    Verdict {
        verified: findings.is_empty(),
        events_checked: bundle.events.len() as u64,
        aggregates,
        checkpoints: checkpoints.len() as u64,
        sealed: checkpoints.last().map_or(0, |c| c.tree_size),
        first_broken: findings.first().cloned(),
        findings,
    }
}

fn finding(kind: FindingKind, checkpoint: Option<u64>, problem: String) -> Finding {
    Finding {
        kind,
        checkpoint,
        tree_index: None,
        event: None,
        problem,
    }
}

/// The checkpoints whose signatures verify, by tree size.
fn verified_checkpoints(
    signed: &[SignedCheckpoint],
    key: &Sm2Verifier,
    findings: &mut Vec<Finding>,
) -> Vec<Checkpoint> {
    let mut good: Vec<Checkpoint> = Vec::new();
    for signed in signed {
        match signed.verify(key) {
            Ok(checkpoint) => good.push(checkpoint),
            Err(error) => findings.push(finding(
                FindingKind::Signature,
                Some(signed.tree_size),
                format!("checkpoint of tree size {}: {error}", signed.tree_size),
            )),
        }
    }
    good.sort_by_key(|c| c.tree_size);
    good
}

/// Adds the verified witnessed checkpoints to the store's: one the store lacks is added (the
/// log is then checked against it too), one that differs replaces the store's. Returns the
/// tree sizes only the witness had.
fn merge_witnessed(
    checkpoints: &mut Vec<Checkpoint>,
    witnessed: &[SignedCheckpoint],
    key: &Sm2Verifier,
    findings: &mut Vec<Finding>,
) -> HashSet<u64> {
    let mut witness_only = HashSet::new();
    for checkpoint in verified_checkpoints(witnessed, key, findings) {
        let size = checkpoint.tree_size;
        match checkpoints.iter_mut().find(|c| c.tree_size == size) {
            Some(stored) if stored.root_hash == checkpoint.root_hash => {}
            Some(stored) => {
                findings.push(finding(
                    FindingKind::Witness,
                    Some(size),
                    format!(
                        "the store's checkpoint of tree size {size} differs from the witnessed one"
                    ),
                ));
                *stored = checkpoint;
            }
            None => {
                findings.push(finding(
                    FindingKind::Witness,
                    Some(size),
                    format!(
                        "the witnessed checkpoint of tree size {size} is missing from the store"
                    ),
                ));
                witness_only.insert(size);
                checkpoints.push(checkpoint);
            }
        }
    }
    checkpoints.sort_by_key(|c| c.tree_size);
    witness_only
}

/// Each verified checkpoint extends the one before it, by the bundle's consistency proofs (a
/// checkpoint only the witness had has none: the log's leaves are checked against its root).
fn check_consistency(
    bundle: &Bundle,
    checkpoints: &[Checkpoint],
    witness_only: &HashSet<u64>,
    findings: &mut Vec<Finding>,
) {
    let proofs: HashMap<(u64, u64), &ConsistencyProof> = bundle
        .consistency
        .iter()
        .map(|p| ((p.from, p.to), p))
        .collect();
    for pair in checkpoints.windows(2) {
        let (old, new) = (&pair[0], &pair[1]);
        if old.tree_size == 0
            || witness_only.contains(&old.tree_size)
            || witness_only.contains(&new.tree_size)
        {
            continue;
        }
        let proof: Option<Vec<Hash>> = proofs
            .get(&(old.tree_size, new.tree_size))
            .and_then(|p| p.proof.iter().map(|h| parse_hash(h)).collect());
        let consistent = proof.is_some_and(|proof| {
            merkle::verify_consistency(
                old.tree_size,
                new.tree_size,
                &old.root_hash,
                &new.root_hash,
                &proof,
            )
            .is_ok()
        });
        if !consistent {
            findings.push(finding(
                FindingKind::Inconsistent,
                Some(new.tree_size),
                format!(
                    "no valid consistency proof from the checkpoint of tree size {} to {}",
                    old.tree_size, new.tree_size
                ),
            ));
        }
    }
}

/// Every event up to the latest checkpoint is included under it (its root recomputed from the
/// events); when not, the stored leaves, once they reproduce the signed roots, name the first
/// event that differs and how.
fn check_inclusion(
    bundle: &Bundle,
    checkpoints: &[Checkpoint],
    leaves: &[Hash],
    findings: &mut Vec<Finding>,
) {
    let Some(latest) = checkpoints.last() else {
        return;
    };
    let sealed = usize::try_from(latest.tree_size).unwrap_or(usize::MAX);
    // The checkpoint that proves a change at index i: the first one covering it.
    let proving = |index: usize| {
        checkpoints
            .iter()
            .find(|c| c.tree_size > index as u64)
            .map(|c| c.tree_size)
    };
    let roots_match = |hashes: &[Hash]| {
        checkpoints.iter().all(|c| {
            usize::try_from(c.tree_size)
                .ok()
                .and_then(|n| hashes.get(..n))
                .is_some_and(|prefix| roots_equal(prefix, c))
        })
    };
    if roots_match(leaves) {
        return;
    }
    let stored: Option<Vec<Hash>> = bundle
        .leaves
        .iter()
        .enumerate()
        .map(|(i, leaf)| {
            (leaf.tree_index == i as u64)
                .then(|| parse_hash(&leaf.leaf_hash))
                .flatten()
        })
        .collect();
    let Some(stored) = stored.filter(|stored| roots_match(stored)) else {
        // The stored leaves were changed too: only the signed roots remain.
        let first_bad = checkpoints.iter().find(|c| {
            usize::try_from(c.tree_size)
                .ok()
                .and_then(|n| leaves.get(..n))
                .is_none_or(|prefix| !roots_equal(prefix, c))
        });
        let previous = first_bad
            .and_then(|bad| {
                checkpoints
                    .iter()
                    .rev()
                    .find(|c| c.tree_size < bad.tree_size)
            })
            .map_or(0, |c| c.tree_size);
        findings.push(Finding {
            tree_index: Some(previous),
            ..finding(
                FindingKind::RootMismatch,
                first_bad.map(|c| c.tree_size),
                format!(
                    "the events do not reproduce the signed root: the first change lies at tree \
                     index {previous} or later, below {}",
                    first_bad.map_or(0, |c| c.tree_size)
                ),
            )
        });
        return;
    };
    let sealed_ids: HashSet<EventId> = bundle.leaves[..sealed].iter().map(BundleLeaf::id).collect();
    let present: HashMap<EventId, usize> = bundle
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id(), i))
        .collect();
    let differs = (0..sealed).find(|&i| leaves.get(i) != Some(&stored[i]));
    let Some(i) = differs else {
        return;
    };
    let expected = bundle.leaves[i].id();
    let (kind, event, problem) = match bundle.events.get(i) {
        None => (
            FindingKind::Removed,
            expected.clone(),
            format!(
                "the log ends after {} events, below the checkpoint of tree size {}: the event \
                 sealed at tree index {i} and every later one are gone",
                bundle.events.len(),
                latest.tree_size
            ),
        ),
        Some(actual) if actual.id() == expected => (
            FindingKind::Altered,
            expected,
            format!("the event sealed at tree index {i} was changed"),
        ),
        Some(actual) if !sealed_ids.contains(&actual.id()) => (
            FindingKind::Inserted,
            actual.id(),
            format!("an event no checkpoint sealed stands at tree index {i}"),
        ),
        Some(_) if !present.contains_key(&expected) => (
            FindingKind::Removed,
            expected,
            format!("the event sealed at tree index {i} is gone"),
        ),
        Some(_) => (
            FindingKind::Reordered,
            expected,
            format!("the event sealed at tree index {i} now stands elsewhere in commit order"),
        ),
    };
    findings.push(Finding {
        kind,
        checkpoint: proving(i),
        tree_index: Some(i as u64),
        event: Some(event),
        problem,
    });
}

fn roots_equal(leaves: &[Hash], checkpoint: &Checkpoint) -> bool {
    let mut frontier = Frontier::default();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root() == checkpoint.root_hash
}

/// Every aggregate's events run 1, 2, … and each links to the hash of the one before. Returns
/// how many aggregates there are.
fn check_chains(events: &[BundleEvent], findings: &mut Vec<Finding>) -> u64 {
    let mut by_aggregate: BTreeMap<(&str, &str), Vec<&BundleEvent>> = BTreeMap::new();
    for event in events {
        by_aggregate
            .entry((&event.aggregate_type, &event.aggregate_id))
            .or_default()
            .push(event);
    }
    for chain in by_aggregate.values_mut() {
        chain.sort_by_key(|e| e.sequence);
        let mut previous = GENESIS_HASH.to_string();
        for (i, event) in chain.iter().enumerate() {
            let link = event.metadata[PREVIOUS_HASH].as_str().unwrap_or_default();
            let problem = if event.sequence != i as i64 + 1 {
                Some(format!(
                    "sequence {} where {} was expected (removed or reordered)",
                    event.sequence,
                    i + 1
                ))
            } else if link != previous {
                Some(
                    "prev_hash does not match the previous event (altered, removed or reordered)"
                        .to_string(),
                )
            } else {
                None
            };
            if let Some(problem) = problem {
                findings.push(Finding {
                    event: Some(event.id()),
                    ..finding(FindingKind::Chain, None, problem)
                });
                break;
            }
            previous = event.hash();
        }
    }
    by_aggregate.len() as u64
}
