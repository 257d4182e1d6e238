//! The audit API (SPEC §8), for auditors: the history of a document or person from the event
//! store itself, the state as of a past moment by replaying the events recorded by then, and a check that
//! no stored event was altered, removed or reordered (the events' hash chains and the signed
//! checkpoints, docs/audit.md; checkpoints and proofs are in `checkpoints`).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use custody_domain::document::{Document, DocumentEvent};
use custody_domain::history::{document_as_of, EventTime};
use custody_domain::person::Person;
use custody_eventlog::{event_hash, StoredEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::scope::{record_query, Scope};
use crate::state::AppState;
use custody_eventlog::AuditPage;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/audit/documents/{zjbs}/events",
            get(document_events),
        )
        .route("/api/v1/audit/persons/{rybs}/events", get(person_events))
        .route("/api/v1/audit/documents/{zjbs}/state", get(document_state))
        .route("/api/v1/audit/verify", get(verify))
}

fn serialized(event: &StoredEvent) -> cqrs_es::persist::SerializedEvent {
    cqrs_es::persist::SerializedEvent::new(
        event.aggregate_id.clone(),
        event.sequence as usize,
        event.aggregate_type.clone(),
        event.event_type.clone(),
        event.event_version.clone(),
        event.payload.clone(),
        event.metadata.clone(),
    )
}

/// The audit API is for auditors and operators, never readers.
pub(crate) fn require_auditor(caller: &Caller) -> Result<(), WireError> {
    if caller.role == Role::Reader {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "the audit API needs the auditor role",
        ));
    }
    Ok(())
}

/// An auditor (or an operator) whose scope includes the aggregate's unit.
async fn auditor(
    state: &AppState,
    caller: Caller,
    unit: Option<String>,
) -> Result<Scope, WireError> {
    require_auditor(&caller)?;
    let scope = Scope::of(state, caller).await?;
    if !scope.sees(unit.as_deref()) {
        return Err(WireError::new(ErrorCode::NotFound, "no such aggregate"));
    }
    Ok(scope)
}

async fn history(
    state: &AppState,
    caller: Caller,
    aggregate_type: &str,
    id: &str,
    unit_of: impl Fn(&[StoredEvent]) -> Option<String>,
) -> Result<Json<Value>, WireError> {
    // The role is judged before anything is looked up, so that a caller who may not use the
    // audit API learns nothing of what exists (docs/security.md).
    require_auditor(&caller)?;
    let stored = state.commands.log().events_of(aggregate_type, id).await?;
    if stored.is_empty() {
        return Err(WireError::new(ErrorCode::NotFound, "no such aggregate"));
    }
    let mut events = stored.clone();
    state.commands.log().open_personal_data(&mut events).await?;
    let scope = auditor(state, caller.clone(), unit_of(&events)).await?;
    record_query(
        state,
        &caller,
        &format!("/api/v1/audit/{aggregate_type}/{id}/events"),
        &[id.to_string()],
    )
    .await?;
    let items: Vec<Value> = events
        .iter()
        .zip(&stored)
        .map(|(event, stored)| {
            // The hash is of the stored event, whose personal fields are sealed (the audit
            // bundle carries that form); the payload shown is opened, and masked without `pii`.
            let mut payload = event.payload.clone();
            scope.mask_payload(&mut payload);
            json!({
                "sequence": event.sequence,
                "event_type": event.event_type,
                "event_version": event.event_version,
                "payload": payload,
                "metadata": event.metadata,
                "hash": event_hash(&serialized(stored)),
            })
        })
        .collect();
    Ok(Json(
        json!({"aggregate_type": aggregate_type, "aggregate_id": id, "events": items}),
    ))
}

/// The unit a document's history names last (its cabinet's unit).
fn document_unit(events: &[StoredEvent]) -> Option<String> {
    let mut document = Document::default();
    for event in events {
        if let Ok(e) = serde_json::from_value::<DocumentEvent>(event.payload.clone()) {
            document.apply(e);
        }
    }
    document.unit.map(|u| u.to_string())
}

fn person_unit(events: &[StoredEvent]) -> Option<String> {
    let mut person = Person::default();
    for event in events {
        if let Ok(e) = serde_json::from_value(event.payload.clone()) {
            person.apply(e);
        }
    }
    person.unit.map(|u| u.to_string())
}

async fn document_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(zjbs): Path<String>,
) -> Result<Json<Value>, WireError> {
    history(&state, caller, "Document", &zjbs, document_unit).await
}

async fn person_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(rybs): Path<String>,
) -> Result<Json<Value>, WireError> {
    history(&state, caller, "Person", &rybs, person_unit).await
}

#[derive(Deserialize)]
struct AsOf {
    at: String,
}

async fn document_state(
    State(state): State<AppState>,
    caller: Caller,
    Path(zjbs): Path<String>,
    Query(as_of): Query<AsOf>,
) -> Result<Json<Value>, WireError> {
    let at = chrono::DateTime::parse_from_rfc3339(&as_of.at)
        .map_err(|_| WireError::new(ErrorCode::InvalidField, "at is not RFC 3339"))?;
    require_auditor(&caller)?;
    let events = state
        .commands
        .log()
        .opened_events_of("Document", &zjbs)
        .await?;
    if events.is_empty() {
        return Err(WireError::new(ErrorCode::NotFound, "no such aggregate"));
    }
    auditor(&state, caller.clone(), document_unit(&events)).await?;
    record_query(
        &state,
        &caller,
        &format!("/api/v1/audit/documents/{zjbs}/state"),
        std::slice::from_ref(&zjbs),
    )
    .await?;
    // The one "as of" rule (docs/architecture.md, "Time"): the events recorded by `at`. An
    // event without a recorded time cannot be placed, so replay stops there.
    let mut history = Vec::with_capacity(events.len());
    for event in &events {
        let Some(recorded) = event.metadata["recorded_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            break;
        };
        let payload: DocumentEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| WireError::internal("stored document event", e))?;
        history.push((payload, recorded));
    }
    let as_of = document_as_of(history, at, EventTime::Recorded);
    let document = as_of.aggregate;
    let version = as_of
        .applied
        .checked_sub(1)
        .and_then(|last| events.get(last))
        .map_or(0, |event| event.sequence);
    Ok(Json(json!({
        "zjbs": zjbs,
        "at": at.to_rfc3339(),
        "version": version,
        "state": document.state,
        "location": document.location,
        "planned_return": document.planned_return,
        "unit": document.unit,
    })))
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<custody_audit::bundle::Verdict>, WireError> {
    require_auditor(&caller)?;
    Ok(Json(verify_log(&state).await?))
}

/// Checks the live store as an offline auditor checks a bundle (docs/audit.md).
pub async fn verify_log(state: &AppState) -> Result<custody_audit::bundle::Verdict, WireError> {
    Ok(verify_store(state.commands.log(), &state.checkpointer.verifier(), &[]).await?)
}

/// Checkpoint signatures and consistency, every event's inclusion under the checkpoints, every
/// aggregate's chain, resealed events against their entries and records, and that the log holds
/// each of `witnessed`. Reads the log a page at a time, once a pass. Needs no data key: the
/// hashes are of the stored (sealed) events.
pub async fn verify_store(
    log: &custody_eventlog::EventLog,
    verifier: &custody_protocol::Sm2Verifier,
    witnessed: &[custody_audit::SignedCheckpoint],
) -> Result<custody_audit::bundle::Verdict, custody_eventlog::EventLogError> {
    let checkpoints = log.checkpoints().await?;
    let consistency = log.consistency_proofs(&checkpoints).await?;
    let mut verification =
        custody_audit::bundle::Verification::new(&checkpoints, &consistency, verifier, witnessed);
    loop {
        let mut walk = log.audit_walk().await?;
        while let Some(page) = walk.next_page(log).await? {
            match page {
                AuditPage::Resealed(entries) => {
                    entries.iter().for_each(|r| verification.resealed(r))
                }
                AuditPage::Leaves(leaves) => leaves.iter().for_each(|l| verification.leaf(l)),
                AuditPage::Events(events) => events.iter().for_each(|e| verification.event(e)),
            }
        }
        if let Some(verdict) = verification.end_pass() {
            return Ok(verdict);
        }
    }
}
