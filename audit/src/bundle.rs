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
    let roots_match = |hashes: &[Hash]| first_failing(hashes, checkpoints).is_none();
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
        let first_bad = first_failing(leaves, checkpoints);
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

/// The first checkpoint (by tree size) whose root the leaves do not reproduce, in one pass.
fn first_failing<'a>(leaves: &[Hash], checkpoints: &'a [Checkpoint]) -> Option<&'a Checkpoint> {
    let mut frontier = Frontier::default();
    checkpoints.iter().find(|checkpoint| {
        let Some(prefix) = usize::try_from(checkpoint.tree_size)
            .ok()
            .and_then(|n| leaves.get(..n))
        else {
            return true;
        };
        for leaf in prefix.get(frontier.size() as usize..).unwrap_or_default() {
            frontier.push(*leaf);
        }
        frontier.root() != checkpoint.root_hash
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use custody_protocol::sm2sig::Sm2Signer;
    use custody_protocol::SecretKey;

    fn signer() -> Sm2Signer {
        let mut bytes = [0u8; 32];
        bytes[31] = 5;
        Sm2Signer::new(&SecretKey::from_slice(&bytes).unwrap())
    }

    /// Three aggregates of two events each, interleaved, with valid chains; checkpoints at 4
    /// and 6 events.
    fn bundle(signer: &Sm2Signer) -> Bundle {
        let mut last: HashMap<String, String> = HashMap::new();
        let mut events = Vec::new();
        for i in 0..6i64 {
            let id = format!("a{}", i % 3);
            let previous = last.get(&id).cloned().unwrap_or(GENESIS_HASH.to_string());
            let event = BundleEvent {
                aggregate_type: "Document".into(),
                aggregate_id: id.clone(),
                sequence: i / 3 + 1,
                event_type: "Noted".into(),
                event_version: "1".into(),
                payload: serde_json::json!({ "n": i }),
                metadata: serde_json::json!({ PREVIOUS_HASH: previous }),
                global_position: i + 1,
                tx_id: (i + 1) as u64,
            };
            last.insert(id, event.hash());
            events.push(event);
        }
        let hashes: Vec<Hash> = events.iter().map(BundleEvent::leaf).collect();
        let leaves = events
            .iter()
            .zip(&hashes)
            .enumerate()
            .map(|(i, (e, h))| BundleLeaf {
                tree_index: i as u64,
                aggregate_type: e.aggregate_type.clone(),
                aggregate_id: e.aggregate_id.clone(),
                sequence: e.sequence,
                global_position: e.global_position,
                leaf_hash: hex::encode(h),
            })
            .collect();
        let checkpoints = [4u64, 6]
            .iter()
            .map(|&n| {
                Checkpoint {
                    tree_size: n,
                    root_hash: merkle::root(&hashes[..n as usize]),
                    timestamp: "2026-12-01T00:00:00.000Z".into(),
                }
                .sign(signer)
                .unwrap()
            })
            .collect();
        let proof = merkle::consistency_proof(&hashes, 4, 6).unwrap();
        Bundle {
            format: BUNDLE_FORMAT.into(),
            public_key_pem: String::new(),
            checkpoints,
            consistency: vec![ConsistencyProof {
                from: 4,
                to: 6,
                proof: proof.iter().map(hex::encode).collect(),
            }],
            leaves,
            events,
        }
    }

    fn first(verdict: &Verdict) -> (FindingKind, Option<u64>, Option<u64>) {
        let first = verdict.first_broken.as_ref().expect("a finding");
        (first.kind, first.tree_index, first.checkpoint)
    }

    #[test]
    fn an_intact_bundle_verifies() {
        let signer = signer();
        let verdict = verify(&bundle(&signer), &signer.verifier());
        assert!(verdict.verified, "{verdict:?}");
        assert_eq!((verdict.sealed, verdict.aggregates), (6, 3));
    }

    #[test]
    fn reordered_events_are_named_with_their_checkpoint() {
        let signer = signer();
        let mut b = bundle(&signer);
        // Two events of different aggregates change places: every chain still links.
        b.events.swap(1, 2);
        let verdict = verify(&b, &signer.verifier());
        assert_eq!(first(&verdict), (FindingKind::Reordered, Some(1), Some(4)));
        assert!(verdict
            .findings
            .iter()
            .all(|f| f.kind != FindingKind::Chain));
    }

    #[test]
    fn removed_inserted_and_cut_events_are_named() {
        let signer = signer();
        let key = signer.verifier();
        let mut b = bundle(&signer);
        b.events.remove(4);
        assert_eq!(
            first(&verify(&b, &key)),
            (FindingKind::Removed, Some(4), Some(6))
        );

        let mut b = bundle(&signer);
        let mut forged = b.events[0].clone();
        forged.aggregate_id = "forged".into();
        b.events.insert(2, forged);
        assert_eq!(
            first(&verify(&b, &key)),
            (FindingKind::Inserted, Some(2), Some(4))
        );

        let mut b = bundle(&signer);
        b.events.truncate(5);
        let verdict = verify(&b, &key);
        assert_eq!(first(&verdict), (FindingKind::Removed, Some(5), Some(6)));
        assert!(verdict
            .first_broken
            .unwrap()
            .problem
            .contains("below the checkpoint"));
    }

    #[test]
    fn bad_signatures_and_proofs_are_named() {
        let signer = signer();
        let key = signer.verifier();
        let mut b = bundle(&signer);
        b.checkpoints[0].timestamp = "2026-12-02T00:00:00.000Z".into();
        assert_eq!(first(&verify(&b, &key)).0, FindingKind::Signature);
        let mut b = bundle(&signer);
        b.consistency[0].proof[0].replace_range(0..1, "f");
        let verdict = verify(&b, &key);
        assert_eq!(first(&verdict).0, FindingKind::Inconsistent, "{verdict:?}");
    }

    #[test]
    fn witnessed_checkpoints_must_be_in_the_store() {
        let signer = signer();
        let key = signer.verifier();
        let intact = bundle(&signer);
        let witnessed = intact.checkpoints.clone();
        let mut b = intact.clone();
        // The last event of its aggregate: no chain link breaks.
        b.events[5].payload = serde_json::json!({ "n": 99 });
        b.checkpoints.clear();
        b.consistency.clear();
        b.leaves.clear();
        assert!(verify(&b, &key).verified, "nothing left to compare with");
        let verdict = verify_with_witnesses(&b, &key, &witnessed);
        assert_eq!(first(&verdict).0, FindingKind::Witness, "{verdict:?}");
        assert!(verdict
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::RootMismatch));
        assert!(verify_with_witnesses(&intact, &key, &witnessed).verified);
    }
}
