//! The audit API (SPEC §8), for auditors: the history of a document or person from the event
//! store itself, the state as of a past moment by replaying the events recorded by then, and a check that
//! no stored event was altered, removed or reordered (each event's `prev_hash` must be the SM3 of
//! the previous event of its aggregate).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cqrs_es::Aggregate;
use custody_domain::document::{Document, DocumentEvent};
use custody_domain::history::{document_as_of, EventTime};
use custody_domain::person::Person;
use custody_eventlog::{event_hash, StoredEvent, GENESIS_HASH, PREVIOUS_HASH};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::scope::{record_query, Scope};
use crate::state::AppState;

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

/// An auditor (or an operator) whose scope includes the aggregate's unit.
async fn auditor(
    state: &AppState,
    caller: Caller,
    unit: Option<String>,
) -> Result<Scope, WireError> {
    if caller.role == Role::Reader {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "the audit API needs the auditor role",
        ));
    }
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
    let events = state.commands.log().events_of(aggregate_type, id).await?;
    if events.is_empty() {
        return Err(WireError::new(ErrorCode::NotFound, "no such aggregate"));
    }
    let _scope = auditor(state, caller.clone(), unit_of(&events)).await?;
    record_query(
        state,
        &caller,
        &format!("/api/v1/audit/{aggregate_type}/{id}/events"),
        &[id.to_string()],
    )
    .await?;
    let items: Vec<Value> = events
        .iter()
        .map(|event| {
            json!({
                "sequence": event.sequence,
                "event_type": event.event_type,
                "event_version": event.event_version,
                "payload": event.payload,
                "metadata": event.metadata,
                "hash": event_hash(&serialized(event)),
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
    let events = state.commands.log().events_of("Document", &zjbs).await?;
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

async fn verify(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, WireError> {
    if caller.role == Role::Reader {
        return Err(WireError::new(
            ErrorCode::Forbidden,
            "the audit API needs the auditor role",
        ));
    }
    Ok(Json(verify_log(&state.commands).await?))
}

/// Walks every aggregate's chain; names the first event that does not link to its predecessor.
pub async fn verify_log(commands: &custody_commands::Commands) -> Result<Value, WireError> {
    let log = commands.log();
    let mut checked = 0u64;
    let mut aggregates = 0u64;
    for aggregate_type in log.aggregate_types().await? {
        let aggregate_type = aggregate_type.as_str();
        for id in log.aggregate_ids(aggregate_type).await? {
            aggregates += 1;
            let mut previous = GENESIS_HASH.to_string();
            for (i, event) in log.events_of(aggregate_type, &id).await?.iter().enumerate() {
                checked += 1;
                let link = event.metadata[PREVIOUS_HASH].as_str().unwrap_or_default();
                let problem = if event.sequence != i as i64 + 1 {
                    Some(format!(
                        "sequence {} where {} was expected (removed or reordered)",
                        event.sequence,
                        i + 1
                    ))
                } else if link != previous {
                    Some("prev_hash does not match the previous event (altered, removed or reordered)".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Ok(json!({
                        "verified": false,
                        "events_checked": checked,
                        "first_broken": {"aggregate_type": aggregate_type, "aggregate_id": id,
                                          "sequence": event.sequence, "problem": problem},
                    }));
                }
                previous = event_hash(&serialized(event));
            }
        }
    }
    Ok(json!({"verified": true, "events_checked": checked, "aggregates": aggregates}))
}
