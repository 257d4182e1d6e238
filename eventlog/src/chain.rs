//! The tamper-evident chain (SPEC §8): every event carries, in its metadata, the SM3 hash of the
//! previous event of its aggregate. An event's hash covers a canonical JSON form of all its
//! stored fields (including that link), so the chain does not depend on how a backend keeps
//! JSON text.

use cqrs_es::persist::SerializedEvent;
use serde_json::Value;
use sm3::{Digest, Sm3};

/// The metadata key of the link to the previous event.
pub const PREVIOUS_HASH: &str = "prev_hash";

/// What the first event of an aggregate links to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// JSON with object keys sorted at every level and no insignificant white space.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lower-case hex SM3 of the event's canonical form.
pub fn event_hash(event: &SerializedEvent) -> String {
    let canonical = canonical_json(&serde_json::json!({
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": event.payload,
        "metadata": event.metadata,
    }));
    Sm3::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_at_every_level() {
        let value = serde_json::json!({"b": [ {"z": 1, "a": "x"} ], "a": null});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":null,"b":[{"a":"x","z":1}]}"#
        );
    }

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
