//! The store's side of the tamper-evident chain (SPEC §8): the hash of a cqrs-es event. The
//! canonical form and the hash itself live in `custody_audit::chain`, where an auditor's tool
//! recomputes them.

use cqrs_es::persist::SerializedEvent;
pub use custody_audit::chain::{canonical_json, GENESIS_HASH, PREVIOUS_HASH};

/// Lower-case hex SM3 of the event's canonical form.
pub fn event_hash(event: &SerializedEvent) -> String {
    custody_audit::chain::event_hash(custody_audit::chain::EventFields {
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
    })
}

/// The hash the chain knows the event by: that of its plain form when it was resealed in place
/// (`custody_audit::reseal`), else [`event_hash`].
pub fn chain_hash(event: &SerializedEvent) -> String {
    match custody_audit::reseal::resealed_from(&event.metadata) {
        Some(plain) => plain.to_string(),
        None => event_hash(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_any_field() {
        let event = SerializedEvent::new(
            "id".into(),
            1,
            "Document".into(),
            "Deposited".into(),
            "1".into(),
            serde_json::json!({"k": 1}),
            serde_json::json!({PREVIOUS_HASH: GENESIS_HASH}),
        );
        let base = event_hash(&event);
        let mut other = event.clone();
        other.sequence = 2;
        assert_ne!(base, event_hash(&other));
        let mut other = event.clone();
        other.payload = serde_json::json!({"k": 2});
        assert_ne!(base, event_hash(&other));
        assert_eq!(base.len(), 64);
    }
}
