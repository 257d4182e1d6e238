//! List messages (`sjts-crjjl`, `sjts-bzjg`, `sjts-bbjg`, `sjsb-bbxx`): their bound, their items
//! and their answer, one result per item (docs/protocol.md, "List messages").

use custody_commands::Outcome;
use custody_protocol::SignedRequest;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::fields::invalid;
use super::rejection_log::keep_rejection;
use super::reply::{Named, Received, Reply};
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

/// At most this many items in one list message (SPEC §5.1 for `sjts-crjjl`; the same bound
/// for every list, so no request holds the ingress for long).
pub(super) const MAX_ITEMS: usize = 1000;

pub(super) fn check_list_length(field: &str, length: usize) -> Result<(), WireError> {
    if length > MAX_ITEMS {
        Err(invalid(
            field,
            format!("{length} items; at most {MAX_ITEMS} in one message"),
        ))
    } else {
        Ok(())
    }
}

/// One list item as its struct; a missing key or a value of the wrong type is `E_MALFORMED`
/// for this item only.
pub(super) fn list_item<T: DeserializeOwned>(item: &Value) -> Result<T, WireError> {
    T::deserialize(item).map_err(|e| WireError::new(ErrorCode::Malformed, format!("item: {e}")))
}

/// The key an item is answered under (`jlbh` or `rybs`); `""` when it has none.
pub(super) fn item_key(item: &Value, field: &str) -> String {
    item[field].as_str().unwrap_or_default().to_string()
}

/// What became of one item.
pub(super) struct ItemResult {
    pub key: String,
    pub outcome: Result<Outcome, WireError>,
}

impl ItemResult {
    pub fn new(key: String, outcome: Result<Outcome, WireError>) -> ItemResult {
        ItemResult { key, outcome }
    }

    fn to_json(&self) -> Value {
        match &self.outcome {
            Ok(outcome) => json!({
                "key": self.key,
                "status": true,
                "error_code": "0",
                "error_msg": "",
                "duplicate": matches!(outcome, Outcome::Duplicate(_)),
            }),
            Err(error) => json!({
                "key": self.key,
                "status": false,
                "error_code": error.code.as_str(),
                "error_msg": error.message,
                "duplicate": false,
            }),
        }
    }
}

/// The answer to a list message: 200 with one result per item. Every refused item is also kept
/// in the rejected-reports log, with the whole envelope and the item's key in the message.
pub(super) async fn list_reply(
    state: &AppState,
    request: &SignedRequest,
    received: &Received<'_>,
    serial: Option<&str>,
    results: Vec<ItemResult>,
) -> Reply {
    for result in &results {
        if let Err(error) = &result.outcome {
            let named = Named {
                ei: &request.c.ei,
                reqid: &request.c.reqid,
                ywlsh: serial.unwrap_or(&result.key),
            };
            let message = format!("item {:?}: {}", result.key, error.message);
            keep_rejection(state, received, named, error, message, true).await;
        }
    }
    let all_duplicates = !results.is_empty()
        && results
            .iter()
            .all(|r| matches!(r.outcome, Ok(Outcome::Duplicate(_))));
    let mut reply = Reply::new(serial.unwrap_or_default(), all_duplicates);
    reply.extra.insert(
        "results".into(),
        Value::Array(results.iter().map(ItemResult::to_json).collect()),
    );
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_holds_at_most_a_thousand_items() {
        assert!(check_list_length("records", 0).is_ok());
        assert!(check_list_length("records", MAX_ITEMS).is_ok());
        let refused = check_list_length("records", MAX_ITEMS + 1).expect_err("1,001");
        assert_eq!(refused.code, ErrorCode::InvalidField);
    }
}
