//! `POST /api/v1/ops/persons/{rybs}/erasure`: erasure by person, an operator's act
//! (docs/personal-data.md, "Erasure"). The use case is `Application::erase_person`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use custody_application::erasure::HeldDocuments;
use custody_application::ApplicationError;
use custody_domain::identifiers::{DocumentId, PersonId};
use custody_domain::person::{ErasureGround, PersonalDataErased};
use custody_domain::transitions::Named;
use custody_domain::EventMetadata;
use custody_projections::read::Reader;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/ops/persons/{rybs}/erasure", post(erase))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasureRequest {
    /// `purpose_fulfilled`, `retention_expired`, `person_requested` or `legal_order`.
    ground: String,
    /// The decision's file number: 1 to 64 of letters, digits and `-_/.`, never personal data.
    reference: String,
}

/// The documents view answers which documents name a person.
pub struct ViewsHeldDocuments(pub Reader);

impl HeldDocuments for ViewsHeldDocuments {
    async fn held_by(&self, person: &PersonId) -> Result<Vec<DocumentId>, ApplicationError> {
        let ids = self
            .0
            .documents_held_by(person.as_str())
            .await
            .map_err(|e| ApplicationError::Lookup(Box::new(e)))?;
        ids.iter()
            .map(|id| {
                id.parse()
                    .map_err(|e| ApplicationError::invalid("zjbs", format!("{id}: {e}")))
            })
            .collect()
    }

    async fn forget(&self, person: &PersonId) -> Result<(), ApplicationError> {
        custody_projections::personal::forget_indexes(self.0.log(), person.as_str())
            .await
            .map(|_| ())
            .map_err(|e| ApplicationError::Lookup(Box::new(e)))
    }
}

/// Reads an erasure's ground and reference as the wire gives them.
pub fn erasure_of(
    ground: &str,
    reference: &str,
    erased_by: String,
) -> Result<PersonalDataErased, WireError> {
    let ground = ErasureGround::ALL
        .iter()
        .copied()
        .find(|g| serde_json::to_value(g).ok().as_ref().and_then(Value::as_str) == Some(ground))
        .ok_or_else(|| {
            WireError::new(
                ErrorCode::InvalidField,
                "ground: one of purpose_fulfilled, retention_expired, person_requested, legal_order",
            )
        })?;
    let fits = (1..=64).contains(&reference.len())
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/.".contains(&b));
    if !fits {
        return Err(WireError::new(
            ErrorCode::InvalidField,
            "reference: 1 to 64 letters, digits, '-', '_', '/' or '.'",
        ));
    }
    Ok(PersonalDataErased {
        ground,
        reference: reference.to_string(),
        erased_by,
    })
}

async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    Path(rybs): Path<String>,
    Json(request): Json<ErasureRequest>,
) -> Result<(StatusCode, Json<Value>), WireError> {
    caller.require(Role::Operator)?;
    let person: PersonId = rybs
        .parse()
        .map_err(|e| WireError::new(ErrorCode::InvalidField, format!("rybs: {e}")))?;
    let erasure = erasure_of(&request.ground, &request.reference, caller.sender())?;
    let metadata = EventMetadata {
        sender: caller.sender(),
        ..EventMetadata::default()
    };
    let held = ViewsHeldDocuments(crate::read::reader(&state));
    let erased = state
        .application
        .erase_person(&held, &person, erasure, metadata)
        .await?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "rybs": person.as_str(),
            "state": custody_domain::person::PersonState::Erased.name(),
            "recorded": erased.recorded,
            "key_destroyed": erased.key_destroyed,
            "documents": erased.documents.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
        })),
    ))
}
