//! What a reader may see: its org subtree, masked unless its token has `pii`, and the query
//! audit log of unmasked reads (SPEC §7). One home for every route that reads personal data.

use custody_domain::identifiers::mask;
use custody_eventlog::QueryAuditEntry;
use custody_projections::read;
use serde_json::Value;

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

/// What a caller may see, and whether unmasked.
pub struct Scope {
    units: read::Scope,
    pii: bool,
    caller: Caller,
}

impl Scope {
    pub async fn of(state: &AppState, caller: Caller) -> Result<Scope, WireError> {
        let units = match (&caller.org, caller.role) {
            (None, Role::Operator) => read::Scope::everything(),
            (None, _) => {
                return Err(WireError::new(ErrorCode::Forbidden, "the token has no org"));
            }
            (Some(org), _) => read::Scope::subtrees(
                [org.clone()].into(),
                state.commands.log().platform().org_subtree(org).await?,
            ),
        };
        Ok(Scope {
            units,
            pii: caller.scopes.iter().any(|s| s == "pii"),
            caller,
        })
    }

    /// Whether personal data is shown unmasked (the token has `pii`).
    pub fn pii(&self) -> bool {
        self.pii
    }

    pub fn sees(&self, unit: Option<&str>) -> bool {
        self.units.sees(unit)
    }

    /// The units, for the views' readers.
    pub fn units(&self) -> &read::Scope {
        &self.units
    }

    pub fn citizen_id(&self, value: Option<&str>) -> Value {
        value
            .map(|v| {
                if self.pii {
                    v.to_string()
                } else {
                    mask(v, 6, 4)
                }
            })
            .map(Value::String)
            .unwrap_or(Value::Null)
    }

    pub fn document_number(&self, value: Option<&str>) -> Value {
        value
            .map(|v| {
                if self.pii {
                    v.to_string()
                } else {
                    mask(v, 4, 3)
                }
            })
            .map(Value::String)
            .unwrap_or(Value::Null)
    }

    /// Masks, unless the token has `pii`, every ID number (`citizen_id`) and document number
    /// (`number`) anywhere in a stored event's payload, as the read API masks its fields.
    pub fn mask_payload(&self, payload: &mut Value) {
        if self.pii {
            return;
        }
        match payload {
            Value::Object(fields) => {
                for (key, value) in fields.iter_mut() {
                    match (key.as_str(), value.as_str()) {
                        ("citizen_id", Some(id)) => *value = self.citizen_id(Some(id)),
                        ("number", Some(number)) => *value = self.document_number(Some(number)),
                        _ => self.mask_payload(value),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.mask_payload(item)),
            _ => {}
        }
    }

    /// Records a read of unmasked personal data.
    pub async fn audit(
        &self,
        state: &AppState,
        path: &str,
        subjects: &[String],
    ) -> Result<(), WireError> {
        if !self.pii || subjects.is_empty() {
            return Ok(());
        }
        record_query(state, &self.caller, path, subjects).await
    }
}

/// Writes one row of the query audit log.
pub async fn record_query(
    state: &AppState,
    caller: &Caller,
    path: &str,
    subjects: &[String],
) -> Result<(), WireError> {
    let entry = QueryAuditEntry {
        at_ms: state.commands.clock().now().timestamp_millis(),
        token_id: &caller.token_id,
        org: caller.org.as_deref(),
        path,
        subjects,
    };
    Ok(state.commands.log().platform().record_query(&entry).await?)
}
