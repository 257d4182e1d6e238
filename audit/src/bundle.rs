//! The audit bundle (docs/audit.md, "Bundle") and its verification, which needs nothing but
//! the bundle and the checkpoint public key: every checkpoint's signature, each checkpoint
//! consistent with the one before, every aggregate's hash chain, and every event's inclusion
//! under the checkpoints. The first event altered, removed, inserted or reordered is named with
//! the checkpoint that proves it.
//!
//! A bundle is written and read a line at a time ([`BundleHeader`], then [`BundleLine`]s), and
//! [`Verification`] checks it fed a line at a time, so that a log of any length is exported and
//! verified in bounded memory.

use std::collections::{HashMap, HashSet};
use std::io::BufRead;

use custody_protocol::sm2sig::Sm2Verifier;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chain::{event_hash, EventFields, GENESIS_HASH, PREVIOUS_HASH};
use crate::checkpoint::{parse_hash, Checkpoint, SignedCheckpoint};
use crate::merkle::{self, Frontier, Hash};
use crate::reseal::{self, ResealEntry, ResealRecord};
use sm3::{Digest, Sm3};

/// The format named by the first line of every bundle.
pub const BUNDLE_FORMAT: &str = "custody-audit-bundle/v3";

/// The formats a bundle may name: v2 has no `resealed` lines, and reads as v3 without them.
const READABLE_FORMATS: [&str; 2] = [BUNDLE_FORMAT, "custody-audit-bundle/v2"];

/// The first line of a bundle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleHeader {
    pub format: String,
    /// The checkpoint public key (SubjectPublicKeyInfo PEM), for information: the verifier
    /// uses the key it is given, never this one.
    pub public_key_pem: String,
}

/// Every other line of a bundle file, in this order: every checkpoint by tree size, the
/// consistency proof from each to the next, every resealed event's entry by run and position,
/// every sealed leaf in tree order, every event in commit order, and last the counts, so that a
/// file cut short is told from a log cut short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleLine {
    Checkpoint(SignedCheckpoint),
    Consistency(ConsistencyProof),
    Resealed(ResealEntry),
    Leaf(BundleLeaf),
    Event(BundleEvent),
    End(BundleEnd),
}

/// The last line: how many lines of each kind came before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEnd {
    pub checkpoints: u64,
    pub consistency: u64,
    /// Absent from a v2 bundle's end line.
    #[serde(default)]
    pub resealed: u64,
    pub leaves: u64,
    pub events: u64,
}

impl BundleEnd {
    /// Counts a line that is not the end line.
    pub fn count(&mut self, line: &BundleLine) {
        match line {
            BundleLine::Checkpoint(_) => self.checkpoints += 1,
            BundleLine::Consistency(_) => self.consistency += 1,
            BundleLine::Resealed(_) => self.resealed += 1,
            BundleLine::Leaf(_) => self.leaves += 1,
            BundleLine::Event(_) => self.events += 1,
            BundleLine::End(_) => {}
        }
    }
}

/// A bundle file that cannot be checked at all (as opposed to a log that does not verify).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: not a bundle line: {source}")]
    Line {
        line: u64,
        source: serde_json::Error,
    },
    #[error("not an audit bundle: the first line names no format {READABLE_FORMATS:?}")]
    Format,
    #[error("line {line}: a {kind} line after the {after} lines (docs/audit.md gives the order)")]
    Order {
        line: u64,
        kind: &'static str,
        after: &'static str,
    },
    #[error("the bundle is cut short: it has no end line (the export did not finish)")]
    Incomplete,
    #[error("the end line counts {said:?} but the bundle holds {held:?}")]
    Counts { said: BundleEnd, held: BundleEnd },
}

/// The order of the end line among the kinds.
const END: u8 = 5;

impl BundleLine {
    fn kind(&self) -> (u8, &'static str) {
        match self {
            BundleLine::Checkpoint(_) => (0, "checkpoint"),
            BundleLine::Consistency(_) => (1, "consistency"),
            BundleLine::Resealed(_) => (2, "resealed"),
            BundleLine::Leaf(_) => (3, "leaf"),
            BundleLine::Event(_) => (4, "event"),
            BundleLine::End(_) => (END, "end"),
        }
    }
}

/// Verifies a bundle file, given a way to open it from its start (it is read once for its
/// checkpoints, once more for its resealed entries if it has any, and once a pass, never held
/// whole): its lines in order, its end line present and
/// its counts right, and then the log as [`Verification`] checks it.
pub fn verify_lines<R: BufRead>(
    mut open: impl FnMut() -> std::io::Result<R>,
    key: &Sm2Verifier,
    witnessed: &[SignedCheckpoint],
) -> Result<Verdict, BundleError> {
    let (mut checkpoints, mut consistency, mut resealed) = (Vec::new(), Vec::new(), 0u64);
    read_lines(open()?, |line| match line {
        BundleLine::Checkpoint(c) => checkpoints.push(c),
        BundleLine::Consistency(p) => consistency.push(p),
        BundleLine::Resealed(_) => resealed += 1,
        _ => {}
    })?;
    let mut verification = Verification::new(&checkpoints, &consistency, key, witnessed);
    drop((checkpoints, consistency));
    if resealed > 0 {
        // A read of their own: the verifier keeps them as hashes, not as lines.
        read_lines(open()?, |line| {
            if let BundleLine::Resealed(entry) = line {
                verification.resealed(&entry);
            }
        })?;
    }
    loop {
        read_lines(open()?, |line| match &line {
            BundleLine::Leaf(leaf) => verification.leaf(leaf),
            BundleLine::Event(event) => verification.event(event),
            _ => {}
        })?;
        if let Some(verdict) = verification.end_pass() {
            return Ok(verdict);
        }
    }
}

/// Reads a bundle file's lines after its header, in order, each handed to `each`, and checks
/// its end line.
fn read_lines(reader: impl BufRead, mut each: impl FnMut(BundleLine)) -> Result<(), BundleError> {
    let mut lines = reader.lines();
    let header: BundleHeader = match lines.next() {
        Some(line) => serde_json::from_str(&line?).map_err(|_| BundleError::Format)?,
        None => return Err(BundleError::Format),
    };
    if !READABLE_FORMATS.contains(&header.format.as_str()) {
        return Err(BundleError::Format);
    }
    let mut held = BundleEnd::default();
    let mut last = (0u8, "header");
    for (i, line) in lines.enumerate() {
        let number = i as u64 + 2;
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line: BundleLine = serde_json::from_str(&line).map_err(|source| BundleError::Line {
            line: number,
            source,
        })?;
        let kind = line.kind();
        if kind.0 < last.0 || last.0 == END {
            return Err(BundleError::Order {
                line: number,
                kind: kind.1,
                after: last.1,
            });
        }
        last = kind;
        if let BundleLine::End(said) = line {
            if said != held {
                return Err(BundleError::Counts { said, held });
            }
            continue;
        }
        held.count(&line);
        each(line);
    }
    if last.0 != END {
        return Err(BundleError::Incomplete);
    }
    Ok(())
}

/// Everything an offline check needs, held in memory (tests and small logs; the service and the
/// command line stream it instead).
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
    /// The resealed events' entries, by run and position.
    #[serde(default)]
    pub resealed: Vec<ResealEntry>,
    /// The sealed leaves as the store keeps them, in tree order.
    pub leaves: Vec<BundleLeaf>,
    /// Every event with all its stored fields, in commit order.
    pub events: Vec<BundleEvent>,
}

impl Bundle {
    /// The bundle as a file holds it: a header, a line each, the end line.
    pub fn to_lines(&self) -> Vec<u8> {
        let header = BundleHeader {
            format: self.format.clone(),
            public_key_pem: self.public_key_pem.clone(),
        };
        let lines = self
            .checkpoints
            .iter()
            .cloned()
            .map(BundleLine::Checkpoint)
            .chain(
                self.consistency
                    .iter()
                    .cloned()
                    .map(BundleLine::Consistency),
            )
            .chain(self.resealed.iter().cloned().map(BundleLine::Resealed))
            .chain(self.leaves.iter().cloned().map(BundleLine::Leaf))
            .chain(self.events.iter().cloned().map(BundleLine::Event));
        let mut out = json_line(&header);
        let mut end = BundleEnd::default();
        for line in lines {
            end.count(&line);
            out.extend(json_line(&line));
        }
        out.extend(json_line(&BundleLine::End(end)));
        out
    }
}

/// One value as a line of a bundle file.
pub fn json_line(value: &impl Serialize) -> Vec<u8> {
    // The bundle's types serialize to JSON without fail: strings, numbers, JSON values.
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
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

    /// The hash the chain and the tree know it by: that of its plain form when it was
    /// resealed (its metadata says so, [`reseal::RESEALED_FROM`]), else [`BundleEvent::hash`].
    /// The store trusts the mark; [`Verification`] checks it against the reseal entries.
    pub fn chain_hash(&self) -> String {
        match reseal::resealed_from(&self.metadata) {
            Some(plain) => plain.to_string(),
            None => self.hash(),
        }
    }

    /// Its Merkle leaf: `SM3(0x00 ‖ the 32 bytes of its chain hash)`.
    pub fn leaf(&self) -> Hash {
        // event_hash always yields 64 hex digits; a mark that is not a hash is no leaf.
        merkle::leaf_hash(&parse_hash(&self.chain_hash()).unwrap_or_default())
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
    /// A resealed event's stored form is not the one its reseal entry recorded, an entry or a
    /// mark has no counterpart, or a run's entries do not match its record event.
    Resealed,
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

/// Verifies a bundle held in memory against the checkpoint key.
pub fn verify(bundle: &Bundle, key: &Sm2Verifier) -> Verdict {
    verify_with_witnesses(bundle, key, &[])
}

/// Verifies a bundle held in memory against the checkpoint key and checkpoints a witness kept
/// outside the database (see [`Verification`]).
pub fn verify_with_witnesses(
    bundle: &Bundle,
    key: &Sm2Verifier,
    witnessed: &[SignedCheckpoint],
) -> Verdict {
    let mut verification =
        Verification::new(&bundle.checkpoints, &bundle.consistency, key, witnessed);
    bundle
        .resealed
        .iter()
        .for_each(|r| verification.resealed(r));
    loop {
        bundle.leaves.iter().for_each(|l| verification.leaf(l));
        bundle.events.iter().for_each(|e| verification.event(e));
        if let Some(verdict) = verification.end_pass() {
            return verdict;
        }
    }
}

/// The check of a bundle fed a line at a time, so that neither the offline verifier nor the
/// service holds the log in memory: 32 bytes a leaf, and a link per aggregate.
///
/// Feed every leaf in tree order and then every event in commit order, and call
/// [`Verification::end_pass`]; when it gives no verdict, feed them again (at most three passes,
/// the later ones only to name a change the first one found).
///
/// What it checks: every checkpoint's signature, each checkpoint consistent with the one before,
/// every aggregate's hash chain, and every event's inclusion under the checkpoints. Checkpoints
/// a witness kept outside the database must be among the store's, and the log must reproduce
/// their roots too, so deleting or re-signing checkpoints in the store does not hide a change.
pub struct Verification {
    checkpoints: Vec<Checkpoint>,
    findings: Vec<Finding>,
    pass: Pass,
    /// Leaves and events fed in the current pass.
    leaves_seen: u64,
    events_seen: u64,
    reseals: Reseals,
}

/// What the verifier keeps of a reseal entry: its hashes as bytes, and its event's place as a
/// hash (about 100 bytes an entry, for a store resealed whole).
struct Vouched {
    id: Hash,
    plain: Hash,
    sealed: Hash,
}

/// The hash of an event's place, to compare an entry with the event it names.
fn place_hash(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> Hash {
    let mut hasher = Sm3::new();
    for part in [
        aggregate_type.as_bytes(),
        b"\0",
        aggregate_id.as_bytes(),
        b"\0",
    ] {
        hasher.update(part);
    }
    hasher.update(sequence.to_be_bytes());
    hasher.finalize().into()
}

/// The resealed events' entries and what the first pass found of them.
#[derive(Default)]
struct Reseals {
    entries: HashMap<i64, Vouched>,
    /// Each run's entry count and digest so far, while the entries are fed.
    hashing: HashMap<i64, (u64, Sm3)>,
    /// Each run's entry count and digest, fixed when the first event is fed.
    runs: Option<HashMap<i64, (u64, String)>>,
    /// Positions of the events that an entry named.
    examined: HashSet<i64>,
    /// Runs whose record event matched.
    recorded: HashSet<i64>,
}

impl Reseals {
    fn runs(&mut self) -> &HashMap<i64, (u64, String)> {
        let hashing = std::mem::take(&mut self.hashing);
        self.runs.get_or_insert_with(|| {
            hashing
                .into_iter()
                .map(|(run, (n, hasher))| (run, (n, hex::encode(hasher.finalize()))))
                .collect()
        })
    }
}

enum Pass {
    /// Leaf hashes of the events and of the store, the chains.
    First {
        event_leaves: Vec<Hash>,
        /// `None` once a stored leaf is out of place or unreadable.
        stored: Option<Vec<Hash>>,
        chains: HashMap<(String, String), Link>,
    },
    /// The change at `at.index` is known: which events stand there.
    Second {
        at: Place,
        expected: Option<EventId>,
        actual: Option<EventId>,
        expected_present: bool,
    },
    /// Is the event that stands at `at.index` among the sealed ones?
    Third {
        at: Place,
        expected: EventId,
        actual: EventId,
        expected_present: bool,
        actual_sealed: bool,
    },
    Done(Verdict),
}

/// Where the first pass found the first change, and what it counted.
#[derive(Clone, Copy)]
struct Place {
    index: u64,
    /// The checkpoint that proves it.
    proving: Option<u64>,
    aggregates: u64,
}

/// Where an aggregate's chain stands.
struct Link {
    sequence: i64,
    hash: String,
    broken: bool,
}

impl Verification {
    /// Verifies the checkpoints' signatures, merges the witnessed ones and checks each
    /// checkpoint extends the one before it.
    pub fn new(
        checkpoints: &[SignedCheckpoint],
        consistency: &[ConsistencyProof],
        key: &Sm2Verifier,
        witnessed: &[SignedCheckpoint],
    ) -> Verification {
        let mut findings = Vec::new();
        let mut verified = verified_checkpoints(checkpoints, key, &mut findings);
        let witness_only = merge_witnessed(&mut verified, witnessed, key, &mut findings);
        check_consistency(consistency, &verified, &witness_only, &mut findings);
        Verification {
            checkpoints: verified,
            findings,
            pass: Pass::First {
                event_leaves: Vec::new(),
                stored: Some(Vec::new()),
                chains: HashMap::new(),
            },
            leaves_seen: 0,
            events_seen: 0,
            reseals: Reseals::default(),
        }
    }

    /// One resealed event's entry: feed them all, by run and position, before the first event
    /// (again in later passes does no harm).
    pub fn resealed(&mut self, entry: &ResealEntry) {
        if self.reseals.runs.is_some() {
            return;
        }
        let (count, hasher) = self
            .reseals
            .hashing
            .entry(entry.run)
            .or_insert_with(|| (0, Sm3::new()));
        *count += 1;
        hasher.update(reseal::entry_line(entry).as_bytes());
        match (
            parse_hash(&entry.plain_hash),
            parse_hash(&entry.sealed_hash),
        ) {
            (Some(plain), Some(sealed)) => {
                let id = place_hash(&entry.aggregate_type, &entry.aggregate_id, entry.sequence);
                let vouched = Vouched { id, plain, sealed };
                self.reseals.entries.insert(entry.global_position, vouched);
            }
            _ => self.findings.push(finding(
                FindingKind::Resealed,
                None,
                format!(
                    "the reseal entry of global position {} holds a hash that is not 64 hex digits",
                    entry.global_position
                ),
            )),
        }
    }

    /// The hash `event` links and is sealed by: its plain hash when it was resealed and its
    /// stored form is the one its entry recorded; otherwise the hash of its stored form, and a
    /// finding for what does not match. A run's record event is checked against its entries.
    fn chain_hash(&mut self, event: &BundleEvent) -> String {
        let stored = event.hash();
        let broken = |problem: String| Finding {
            event: Some(event.id()),
            ..finding(FindingKind::Resealed, None, problem)
        };
        if let Some(record) =
            ResealRecord::of(&event.aggregate_type, &event.event_type, &event.payload)
        {
            let matches = self
                .reseals
                .runs()
                .get(&record.run)
                .is_some_and(|(n, sm3)| *n == record.events && *sm3 == record.entries_sm3)
                && record.run == event.sequence;
            if matches {
                self.reseals.recorded.insert(record.run);
            } else {
                self.findings.push(broken(format!(
                    "the record of reseal run {} does not match the run's entries",
                    record.run
                )));
            }
        }
        self.reseals.runs();
        let entry = self.reseals.entries.get(&event.global_position);
        if entry.is_some() {
            self.reseals.examined.insert(event.global_position);
        }
        match (reseal::resealed_from(&event.metadata), entry) {
            (None, None) => stored,
            (Some(plain), Some(entry))
                if parse_hash(plain) == Some(entry.plain)
                    && parse_hash(&stored) == Some(entry.sealed)
                    && entry.id
                        == place_hash(
                            &event.aggregate_type,
                            &event.aggregate_id,
                            event.sequence,
                        ) =>
            {
                plain.to_string()
            }
            (Some(_), Some(_)) => {
                self.findings.push(broken(
                    "the resealed event is not stored as its reseal entry recorded".into(),
                ));
                stored
            }
            (Some(_), None) => {
                self.findings.push(broken(
                    "marked resealed, but no reseal entry names it".into(),
                ));
                stored
            }
            (None, Some(_)) => {
                self.findings.push(broken(
                    "a reseal entry names it, but it is not marked resealed".into(),
                ));
                stored
            }
        }
    }

    /// After the first pass: every entry named an event, and every run has its record.
    fn check_reseals(&mut self) {
        let mut unmatched: Vec<i64> = self
            .reseals
            .entries
            .keys()
            .filter(|position| !self.reseals.examined.contains(position))
            .copied()
            .collect();
        unmatched.sort_unstable();
        let mut found: Vec<Finding> = unmatched
            .into_iter()
            .map(|position| {
                finding(
                    FindingKind::Resealed,
                    None,
                    format!(
                        "a reseal entry names global position {position}, where the log holds \
                         no such event"
                    ),
                )
            })
            .collect();
        let recorded = &self.reseals.recorded;
        let mut runs: Vec<i64> = self
            .reseals
            .runs
            .iter()
            .flat_map(|runs| runs.keys())
            .filter(|run| !recorded.contains(run))
            .copied()
            .collect();
        runs.sort_unstable();
        found.extend(runs.into_iter().map(|run| {
            finding(
                FindingKind::Resealed,
                None,
                format!("reseal run {run} has entries but no matching record event"),
            )
        }));
        self.findings.extend(found);
    }

    fn sealed(&self) -> u64 {
        self.checkpoints.last().map_or(0, |c| c.tree_size)
    }

    /// One stored leaf, in tree order.
    pub fn leaf(&mut self, leaf: &BundleLeaf) {
        let i = self.leaves_seen;
        self.leaves_seen += 1;
        let sealed = self.sealed();
        match &mut self.pass {
            Pass::First { stored, .. } => {
                let hash = (leaf.tree_index == i)
                    .then(|| parse_hash(&leaf.leaf_hash))
                    .flatten();
                match (stored.as_mut(), hash) {
                    (Some(stored), Some(hash)) => stored.push(hash),
                    _ => *stored = None,
                }
            }
            Pass::Second { at, expected, .. } if i == at.index => *expected = Some(leaf.id()),
            Pass::Third {
                actual,
                actual_sealed,
                ..
            } if i < sealed && leaf.id() == *actual => *actual_sealed = true,
            _ => {}
        }
    }

    /// One event, in commit order.
    pub fn event(&mut self, event: &BundleEvent) {
        let i = self.events_seen;
        self.events_seen += 1;
        let first_pass_hash =
            matches!(self.pass, Pass::First { .. }).then(|| self.chain_hash(event));
        match &mut self.pass {
            Pass::First {
                event_leaves,
                chains,
                ..
            } => {
                let hash = first_pass_hash.unwrap_or_default();
                event_leaves.push(merkle::leaf_hash(&parse_hash(&hash).unwrap_or_default()));
                if let Some(problem) = link(chains, event, hash) {
                    self.findings.push(Finding {
                        event: Some(event.id()),
                        ..finding(FindingKind::Chain, None, problem)
                    });
                }
            }
            Pass::Second {
                at,
                expected,
                actual,
                expected_present,
            } => {
                let id = event.id();
                if i == at.index {
                    *actual = Some(id.clone());
                }
                if expected.as_ref() == Some(&id) {
                    *expected_present = true;
                }
            }
            Pass::Third { .. } | Pass::Done(_) => {}
        }
    }

    /// Ends a pass: the verdict, or `None` when the leaves and events must be fed again.
    pub fn end_pass(&mut self) -> Option<Verdict> {
        let (leaves, events) = (self.leaves_seen, self.events_seen);
        self.leaves_seen = 0;
        self.events_seen = 0;
        let placeholder = Pass::Done(self.verdict(0, 0));
        let pass = std::mem::replace(&mut self.pass, placeholder);
        self.pass = match pass {
            Pass::First {
                event_leaves,
                stored,
                chains,
            } => {
                self.check_reseals();
                let aggregates = chains.len() as u64;
                match self.first_difference(&event_leaves, stored) {
                    None => Pass::Done(self.verdict(events, aggregates)),
                    Some(index) => Pass::Second {
                        at: Place {
                            index,
                            proving: self.proving(index),
                            aggregates,
                        },
                        expected: None,
                        actual: None,
                        expected_present: false,
                    },
                }
            }
            Pass::Second {
                at:
                    at @ Place {
                        index,
                        proving,
                        aggregates,
                    },
                expected,
                actual,
                expected_present,
            } => match (expected, actual) {
                (Some(expected), None) => {
                    let problem = format!(
                        "the log ends after {events} events, below the checkpoint of tree size \
                         {}: the event sealed at tree index {index} and every later one are gone",
                        self.sealed()
                    );
                    self.name(FindingKind::Removed, index, proving, expected, problem);
                    Pass::Done(self.verdict(events, aggregates))
                }
                (Some(expected), Some(actual)) if expected == actual => {
                    let problem = format!("the event sealed at tree index {index} was changed");
                    self.name(FindingKind::Altered, index, proving, expected, problem);
                    Pass::Done(self.verdict(events, aggregates))
                }
                (Some(expected), Some(actual)) => Pass::Third {
                    at,
                    expected,
                    actual,
                    expected_present,
                    actual_sealed: false,
                },
                // The leaves changed between passes: the bundle is not what it was.
                (None, _) => {
                    self.findings.push(finding(
                        FindingKind::RootMismatch,
                        proving,
                        format!("the bundle changed while it was read ({leaves} leaves)"),
                    ));
                    Pass::Done(self.verdict(events, aggregates))
                }
            },
            Pass::Third {
                at:
                    Place {
                        index,
                        proving,
                        aggregates,
                    },
                expected,
                actual,
                expected_present,
                actual_sealed,
            } => {
                let (kind, event, problem) = if !actual_sealed {
                    (
                        FindingKind::Inserted,
                        actual,
                        format!("an event no checkpoint sealed stands at tree index {index}"),
                    )
                } else if !expected_present {
                    (
                        FindingKind::Removed,
                        expected,
                        format!("the event sealed at tree index {index} is gone"),
                    )
                } else {
                    (
                        FindingKind::Reordered,
                        expected,
                        format!(
                            "the event sealed at tree index {index} now stands elsewhere in \
                             commit order"
                        ),
                    )
                };
                self.name(kind, index, proving, event, problem);
                Pass::Done(self.verdict(events, aggregates))
            }
            done @ Pass::Done(_) => done,
        };
        match &self.pass {
            Pass::Done(verdict) => Some(verdict.clone()),
            _ => None,
        }
    }

    /// The checkpoint that proves a change at `index`: the first one covering it.
    fn proving(&self, index: u64) -> Option<u64> {
        self.checkpoints
            .iter()
            .find(|c| c.tree_size > index)
            .map(|c| c.tree_size)
    }

    fn name(
        &mut self,
        kind: FindingKind,
        index: u64,
        proving: Option<u64>,
        event: EventId,
        problem: String,
    ) {
        self.findings.push(Finding {
            kind,
            checkpoint: proving,
            tree_index: Some(index),
            event: Some(event),
            problem,
        });
    }

    /// Every event up to the latest checkpoint is included under it (its root recomputed from
    /// the events). When not, and the stored leaves reproduce the signed roots, the first index
    /// where the events' leaves differ from the stored ones, to be named by the next passes;
    /// when the stored leaves were changed too, only the signed roots remain to say where.
    fn first_difference(&mut self, leaves: &[Hash], stored: Option<Vec<Hash>>) -> Option<u64> {
        if self.checkpoints.is_empty() {
            return None;
        }
        let roots_match = |hashes: &[Hash]| first_failing(hashes, &self.checkpoints).is_none();
        if roots_match(leaves) {
            return None;
        }
        let Some(stored) = stored.filter(|stored| roots_match(stored)) else {
            let first_bad = first_failing(leaves, &self.checkpoints).map(|c| c.tree_size);
            let previous = first_bad
                .and_then(|bad| self.checkpoints.iter().rev().find(|c| c.tree_size < bad))
                .map_or(0, |c| c.tree_size);
            self.findings.push(Finding {
                tree_index: Some(previous),
                ..finding(
                    FindingKind::RootMismatch,
                    first_bad,
                    format!(
                        "the events do not reproduce the signed root: the first change lies at \
                         tree index {previous} or later, below {}",
                        first_bad.unwrap_or(0)
                    ),
                )
            });
            return None;
        };
        let sealed = usize::try_from(self.sealed()).unwrap_or(usize::MAX);
        (0..sealed)
            .find(|&i| leaves.get(i) != stored.get(i))
            .map(|i| i as u64)
    }

    fn verdict(&self, events: u64, aggregates: u64) -> Verdict {
        let mut findings = self.findings.clone();
        findings.sort_by_key(|f| (f.kind as u8, f.tree_index.unwrap_or(u64::MAX)));
        Verdict {
            verified: findings.is_empty(),
            events_checked: events,
            aggregates,
            checkpoints: self.checkpoints.len() as u64,
            sealed: self.sealed(),
            first_broken: findings.first().cloned(),
            findings,
        }
    }
}

/// Checks that `event` continues its aggregate's chain: sequences run 1, 2, … and each event
/// links to the hash of the one before. The first break of an aggregate is its only finding.
fn link(
    chains: &mut HashMap<(String, String), Link>,
    event: &BundleEvent,
    hash: String,
) -> Option<String> {
    let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
    let chain = chains.entry(key).or_insert_with(|| Link {
        sequence: 0,
        hash: GENESIS_HASH.to_string(),
        broken: false,
    });
    if chain.broken {
        return None;
    }
    let linked = event.metadata[PREVIOUS_HASH].as_str().unwrap_or_default();
    let problem = if event.sequence != chain.sequence + 1 {
        Some(format!(
            "sequence {} where {} was expected (removed or reordered)",
            event.sequence,
            chain.sequence + 1
        ))
    } else if linked != chain.hash {
        Some(
            "prev_hash does not match the previous event (altered, removed or reordered)"
                .to_string(),
        )
    } else {
        None
    };
    match problem {
        Some(problem) => {
            chain.broken = true;
            Some(problem)
        }
        None => {
            chain.sequence = event.sequence;
            chain.hash = hash;
            None
        }
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
    consistency: &[ConsistencyProof],
    checkpoints: &[Checkpoint],
    witness_only: &HashSet<u64>,
    findings: &mut Vec<Finding>,
) {
    let proofs: HashMap<(u64, u64), &ConsistencyProof> =
        consistency.iter().map(|p| ((p.from, p.to), p)).collect();
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
            resealed: vec![],
            leaves,
            events,
        }
    }

    /// The bundle with events 0 and 1 (aggregates a0 and a1, both followed by their second
    /// event) resealed after the checkpoints, and the run's record appended.
    fn resealed(signer: &Sm2Signer) -> Bundle {
        let mut b = bundle(signer);
        for i in 0..2 {
            let event = &mut b.events[i];
            let plain = event.hash();
            event.payload = serde_json::json!({ "n": {"sealed_for": "p", "sealed": "AAAA"} });
            event.metadata[reseal::RESEALED_FROM] = plain.clone().into();
            b.resealed.push(ResealEntry {
                run: 1,
                global_position: event.global_position,
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: event.sequence,
                plain_hash: plain,
                sealed_hash: event.hash(),
            });
        }
        let record = ResealRecord {
            run: 1,
            events: 2,
            entries_sm3: reseal::digest(&b.resealed),
        };
        b.events.push(BundleEvent {
            aggregate_type: reseal::RECORD_AGGREGATE_TYPE.into(),
            aggregate_id: reseal::RECORD_AGGREGATE_ID.into(),
            sequence: 1,
            event_type: reseal::RECORD_EVENT_TYPE.into(),
            event_version: "1".into(),
            payload: record.payload(),
            metadata: serde_json::json!({ PREVIOUS_HASH: GENESIS_HASH }),
            global_position: 7,
            tx_id: 7,
        });
        b
    }

    fn resealed_finding(verdict: &Verdict) -> bool {
        !verdict.verified
            && verdict
                .findings
                .iter()
                .any(|f| f.kind == FindingKind::Resealed)
    }

    #[test]
    fn resealed_events_verify_and_every_part_of_the_record_is_checked() {
        let signer = signer();
        let key = signer.verifier();
        let intact = resealed(&signer);
        let verdict = verify(&intact, &key);
        assert!(verdict.verified, "{verdict:?}");
        assert!(from_file(&intact.to_lines(), &key).unwrap().verified);

        // A byte of a resealed payload: its sealed hash no longer matches, and the event, now
        // known by its stored hash, breaks its chain and the checkpoint.
        let mut b = intact.clone();
        b.events[0].payload["n"]["sealed"] = "AAAB".into();
        let verdict = verify(&b, &key);
        assert!(resealed_finding(&verdict), "{verdict:?}");
        assert!(verdict
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Altered));

        // A recorded hash, either one.
        let mut b = intact.clone();
        b.resealed[1].sealed_hash.replace_range(0..1, "f");
        assert!(resealed_finding(&verify(&b, &key)));
        let mut b = intact.clone();
        b.resealed[0].plain_hash.replace_range(0..1, "f");
        assert!(resealed_finding(&verify(&b, &key)));

        // A payload and its sealed hash changed together: the list no longer has the record's
        // digest.
        let mut b = intact.clone();
        b.events[1].payload["n"]["sealed"] = "AAAB".into();
        b.resealed[1].sealed_hash = b.events[1].hash();
        let verdict = verify(&b, &key);
        assert!(resealed_finding(&verdict), "{verdict:?}");

        // The record event itself, an entry dropped, a mark dropped.
        let mut b = intact.clone();
        b.events[6].payload[reseal::RECORD_EVENT_TYPE]["events"] = 3.into();
        assert!(resealed_finding(&verify(&b, &key)));
        let mut b = intact.clone();
        b.resealed.remove(0);
        assert!(resealed_finding(&verify(&b, &key)));
        let mut b = intact.clone();
        b.events[0]
            .metadata
            .as_object_mut()
            .unwrap()
            .remove(reseal::RESEALED_FROM);
        assert!(resealed_finding(&verify(&b, &key)));
        // No record at all.
        let mut b = intact.clone();
        b.events.pop();
        assert!(resealed_finding(&verify(&b, &key)));
    }

    fn first(verdict: &Verdict) -> (FindingKind, Option<u64>, Option<u64>) {
        let first = verdict.first_broken.as_ref().expect("a finding");
        (first.kind, first.tree_index, first.checkpoint)
    }

    fn from_file(bytes: &[u8], key: &Sm2Verifier) -> Result<Verdict, BundleError> {
        verify_lines(|| Ok(std::io::Cursor::new(bytes)), key, &[])
    }

    #[test]
    fn a_file_verifies_as_the_bundle_in_memory_and_a_cut_file_is_told_from_a_cut_log() {
        let signer = signer();
        let key = signer.verifier();
        let intact = bundle(&signer);
        let file = intact.to_lines();
        assert_eq!(from_file(&file, &key).unwrap(), verify(&intact, &key));
        let mut reordered = intact.clone();
        reordered.events.swap(1, 2);
        assert_eq!(
            from_file(&reordered.to_lines(), &key).unwrap(),
            verify(&reordered, &key),
            "the later passes read the file again"
        );
        let cut = &file[..file.len() - 20];
        let cut = &cut[..cut.iter().rposition(|&b| b == b'\n').unwrap() + 1];
        assert!(matches!(from_file(cut, &key), Err(BundleError::Incomplete)));
        let text = String::from_utf8(file.clone()).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let event = lines
            .iter()
            .position(|l| l.starts_with("{\"event\""))
            .unwrap();
        lines.swap(event, event - 1);
        let swapped = lines.join("\n");
        assert!(matches!(
            from_file(swapped.as_bytes(), &key),
            Err(BundleError::Order { .. })
        ));
        lines.swap(event, event - 1);
        lines.remove(event);
        assert!(matches!(
            from_file(lines.join("\n").as_bytes(), &key),
            Err(BundleError::Counts { .. })
        ));
        assert!(matches!(from_file(b"{}\n", &key), Err(BundleError::Format)));
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
