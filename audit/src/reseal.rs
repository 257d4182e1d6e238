//! Events resealed in place (docs/personal-data.md, "Migrating a plaintext store"): a store
//! written before personal data were sealed has them in clear; `custody keys seal-plaintext`
//! rewrites each such event's personal fields to their sealed form. The rewrite is recorded,
//! not silent:
//!
//! - the resealed event's metadata gains [`RESEALED_FROM`], the hash of its plain form; that hash
//!   stays the event's *chain hash*: the next event's `prev_hash` and its Merkle leaf, so the
//!   chain and every checkpoint made before the reseal still hold;
//! - a [`ResealEntry`] per event (its place, its plain hash, the hash of its stored, sealed form)
//!   is kept in a table of its own and carried by the audit bundle;
//! - each run appends one record event ([`RECORD_AGGREGATE_TYPE`]) whose payload holds the SM3
//!   of the run's entries ([`digest`]), so the next checkpoint covers the list.
//!
//! A verifier without the key checks a resealed event's stored form against the sealed hash of
//! its entry and the entries against the record; one with the key can open the fields and
//! recompute the plain hash itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sm3::{Digest, Sm3};

/// The metadata key of a resealed event: the hash of its plain form, its chain hash.
pub const RESEALED_FROM: &str = "resealed_from";

/// The aggregate of the reseal records: the store's own record, not a domain aggregate (no
/// projector or process takes it). The run number is the record event's sequence.
pub const RECORD_AGGREGATE_TYPE: &str = "Store";
pub const RECORD_AGGREGATE_ID: &str = "personal-data";
pub const RECORD_EVENT_TYPE: &str = "PlaintextResealed";

/// One resealed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealEntry {
    /// The run that resealed it: the sequence of the run's record event.
    pub run: i64,
    pub global_position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// The hash of the event as first stored, in clear: its chain hash.
    pub plain_hash: String,
    /// The hash of the event as stored now, sealed (with [`RESEALED_FROM`] in its metadata).
    pub sealed_hash: String,
}

/// What a run's record event says (its payload, under [`RECORD_EVENT_TYPE`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResealRecord {
    pub run: i64,
    /// How many events the run resealed.
    pub events: u64,
    /// [`digest`] of the run's entries.
    pub entries_sm3: String,
}

impl ResealRecord {
    /// The record a record event's payload holds, if it is one.
    pub fn of(aggregate_type: &str, event_type: &str, payload: &Value) -> Option<ResealRecord> {
        if aggregate_type != RECORD_AGGREGATE_TYPE || event_type != RECORD_EVENT_TYPE {
            return None;
        }
        serde_json::from_value(payload.get(RECORD_EVENT_TYPE)?.clone()).ok()
    }

    /// The payload of the record event.
    pub fn payload(&self) -> Value {
        serde_json::json!({ RECORD_EVENT_TYPE: self })
    }
}

/// Lower-case hex SM3 of a run's entries, in `global_position` order, one [`entry_line`] each.
pub fn digest<'a>(entries: impl IntoIterator<Item = &'a ResealEntry>) -> String {
    let mut hasher = Sm3::new();
    for e in entries {
        hasher.update(entry_line(e).as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// An entry as the digest reads it:
/// `global_position SP aggregate_type SP aggregate_id SP sequence SP plain_hash SP sealed_hash LF`.
pub fn entry_line(e: &ResealEntry) -> String {
    format!(
        "{} {} {} {} {} {}\n",
        e.global_position,
        e.aggregate_type,
        e.aggregate_id,
        e.sequence,
        e.plain_hash,
        e.sealed_hash
    )
}

/// The plain hash a stored event claims to have been resealed from, if any.
pub fn resealed_from(metadata: &Value) -> Option<&str> {
    metadata.get(RESEALED_FROM).and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(position: i64) -> ResealEntry {
        ResealEntry {
            run: 1,
            global_position: position,
            aggregate_type: "Document".into(),
            aggregate_id: "z".into(),
            sequence: position,
            plain_hash: "a".repeat(64),
            sealed_hash: "b".repeat(64),
        }
    }

    #[test]
    fn the_digest_covers_every_field_and_the_order() {
        let entries = [entry(1), entry(2)];
        let base = digest(&entries);
        assert_eq!(base.len(), 64);
        assert_ne!(base, digest([&entries[1], &entries[0]]));
        let mut changed = entries.clone();
        changed[1].sealed_hash = "c".repeat(64);
        assert_ne!(base, digest(&changed));
        assert_ne!(base, digest(&entries[..1]));
    }

    #[test]
    fn a_record_reads_back_from_its_payload() {
        let record = ResealRecord {
            run: 2,
            events: 5,
            entries_sm3: "d".repeat(64),
        };
        let payload = record.payload();
        assert_eq!(
            ResealRecord::of(RECORD_AGGREGATE_TYPE, RECORD_EVENT_TYPE, &payload),
            Some(record)
        );
        assert_eq!(
            ResealRecord::of("Document", RECORD_EVENT_TYPE, &payload),
            None
        );
    }
}
