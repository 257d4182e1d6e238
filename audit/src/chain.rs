//! The tamper-evident chain (SPEC §8): every event carries, in its metadata, the SM3 hash of the
//! previous event of its aggregate. An event's hash covers a canonical JSON form of all its
//! stored fields (including that link), so the chain does not depend on how a backend keeps
//! JSON text. The store writes these hashes; an auditor's tool recomputes them.

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

/// The stored fields of one event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub event_type: &'a str,
    pub event_version: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// Lower-case hex SM3 of the event's canonical form.
pub fn event_hash(event: EventFields<'_>) -> String {
    let canonical = canonical_json(&serde_json::json!({
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "sequence": event.sequence,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "payload": event.payload,
        "metadata": event.metadata,
    }));
    hex::encode(Sm3::digest(canonical.as_bytes()))
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
}
