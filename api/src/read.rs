//! The read API (SPEC §7.1): projections only, scoped to the caller's org subtree.
//!
//! Anything outside the subtree answers 404 exactly as if it did not exist. ID numbers and
//! document numbers are masked here, at the edge, unless the token has the `pii` scope, and
//! every answer that carries unmasked personal data is written to the query audit log. The
//! queries themselves are the views' readers (`custody_projections::read`); a handler parses
//! the request, calls one reader and shapes the reply.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use custody_domain::reminder::china_date;
use custody_domain::transitions::Named;
use custody_projections::read::{
    self, AccessRecordFilter, DocumentFilter, DocumentRow, Page, Reader,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ErrorCode, WireError};
use crate::scope::Scope;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/documents", get(documents))
        .route("/api/v1/documents/{zjbs}", get(document))
        .route("/api/v1/persons/{rybs}", get(person))
        .route("/api/v1/cabinets/{sbxlh}", get(cabinet))
        .route("/api/v1/access-records", get(access_records))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/stats", get(stats))
}

fn not_found(what: &str) -> WireError {
    WireError::new(ErrorCode::NotFound, format!("no such {what}"))
}

pub(crate) fn reader(state: &AppState) -> Reader {
    Reader::new(state.commands.log().clone())
}

fn document_json(scope: &Scope, document: &DocumentRow) -> Value {
    let location = document.location.as_ref().map(|l| {
        json!({
            "sbxlh": l.device,
            "zjgxlh": l.body,
            "row": l.row,
            "col": l.column,
        })
    });
    json!({
        "zjbs": document.id,
        "zjlx": document.document_type,
        "zjhm": scope.document_number(document.number.as_deref()),
        "state": document.state.name(),
        "holder": {
            "rybs": document.holder.id,
            "xm": document.holder.name,
            "gmsfhm": scope.citizen_id(document.holder.citizen_id.as_deref()),
        },
        "unit": document.unit,
        "location": location,
        "planned_return": document.planned_return,
        "version": document.version,
        "updated_at": document.updated_at,
    })
}

async fn document(
    State(state): State<AppState>,
    caller: Caller,
    Path(zjbs): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let document = reader(&state)
        .document(scope.units(), &zjbs)
        .await?
        .ok_or_else(|| not_found("document"))?;
    scope
        .audit(
            &state,
            &format!("/api/v1/documents/{zjbs}"),
            std::slice::from_ref(&zjbs),
        )
        .await?;
    Ok(Json(document_json(&scope, &document)))
}

#[derive(Deserialize)]
struct DocumentQuery {
    unit: Option<String>,
    state: Option<String>,
    /// A document number: looked up by its blind index (docs/personal-data.md).
    zjhm: Option<String>,
    /// The holder's citizen ID number: looked up by its blind index.
    gmsfhm: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

/// A query value read as the domain type `T` and written back in its canonical form; an empty
/// one is no filter.
fn checked<T>(field: &str, value: Option<String>) -> Result<Option<String>, WireError>
where
    T: std::str::FromStr + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    match value.filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(|t| Some(t.to_string()))
            .map_err(|e| WireError::new(ErrorCode::InvalidField, format!("{field}: {e}"))),
    }
}

/// `page` from 1, `per_page` at most 500.
fn paging(page: Option<i64>, per_page: Option<i64>) -> Result<Page, WireError> {
    let number = page.unwrap_or(1);
    let size = per_page.unwrap_or(50);
    if number < 1 || !(1..=500).contains(&size) {
        return Err(WireError::new(
            ErrorCode::InvalidField,
            "page starts at 1 and per_page is 1 to 500",
        ));
    }
    Ok(Page { number, size })
}

async fn documents(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DocumentQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let page = paging(query.page, query.per_page)?;
    // Checked as the domain reads them, so that a look-up is by the value a report carries.
    let number = checked::<custody_domain::identifiers::DocumentNumber>("zjhm", query.zjhm)?;
    let holder_citizen_id =
        checked::<custody_domain::identifiers::CitizenId>("gmsfhm", query.gmsfhm)?;
    let filter = DocumentFilter {
        unit: query.unit,
        state: query.state,
        number,
        holder_citizen_id,
    };
    let found = reader(&state)
        .documents(scope.units(), &filter, page)
        .await?;
    let subjects: Vec<String> = found.documents.iter().map(|d| d.id.clone()).collect();
    scope.audit(&state, "/api/v1/documents", &subjects).await?;
    let items: Vec<Value> = found
        .documents
        .iter()
        .map(|d| document_json(&scope, d))
        .collect();
    Ok(Json(json!({
        "documents": items,
        "page": page.number,
        "per_page": page.size,
        "total": found.total,
    })))
}

/// A filed person, or one known only as a document's holder (`state` `HolderOnly`).
async fn person(
    State(state): State<AppState>,
    caller: Caller,
    Path(rybs): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let person = reader(&state)
        .person(scope.units(), &rybs)
        .await?
        .ok_or_else(|| not_found("person"))?;
    scope
        .audit(
            &state,
            &format!("/api/v1/persons/{rybs}"),
            std::slice::from_ref(&rybs),
        )
        .await?;
    Ok(Json(json!({
        "rybs": person.id,
        "xm": person.name,
        "gmsfhm": scope.citizen_id(person.citizen_id.as_deref()),
        "state": person.status.name(),
        "unit": person.unit,
        "documents": person.documents,
    })))
}

/// Epoch milliseconds as an RFC 3339 time in China time.
pub(crate) fn china_time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| {
        t.with_timezone(&custody_domain::values::china_standard_time())
            .to_rfc3339()
    })
}

async fn cabinet(
    State(state): State<AppState>,
    caller: Caller,
    Path(sbxlh): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let cabinet = reader(&state)
        .cabinet(scope.units(), &sbxlh)
        .await?
        .ok_or_else(|| not_found("cabinet"))?;
    let bodies: Vec<Value> = cabinet
        .bodies
        .iter()
        .map(|body| {
            let drawers: Vec<Value> = body
                .drawers
                .iter()
                .map(|d| json!({"row": d.row, "col": d.column, "documents": d.documents}))
                .collect();
            json!({"zjgxlh": body.serial, "rows": body.rows, "cols": body.columns, "drawers": drawers})
        })
        .collect();
    let last_heartbeat = cabinet.last_heartbeat.and_then(|beat| {
        Some(json!({
            "at": china_time(beat.received_ms)?,
            "status": serde_json::from_str::<Value>(&beat.status).ok(),
        }))
    });
    Ok(Json(json!({
        "sbxlh": cabinet.device,
        "unit": cabinet.unit,
        "state": cabinet.state.name(),
        "cabinets": bodies,
        "last_heartbeat": last_heartbeat,
    })))
}

#[derive(Deserialize)]
struct AccessQuery {
    zjbs: Option<String>,
    sbxlh: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

fn millis(field: &str, value: &Option<String>, default: i64) -> Result<i64, WireError> {
    match value {
        None => Ok(default),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                WireError::new(ErrorCode::InvalidField, format!("{field} is not RFC 3339"))
            }),
    }
}

async fn access_records(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AccessQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let page = paging(query.page, query.per_page)?;
    let filter = AccessRecordFilter {
        from_ms: millis("from", &query.from, i64::MIN)?,
        to_ms: millis("to", &query.to, i64::MAX)?,
        document: query.zjbs,
        device: query.sbxlh,
    };
    let records: Vec<Value> = reader(&state)
        .access_records(scope.units(), &filter, page)
        .await?
        .into_iter()
        .map(|r| {
            json!({
                "zjbs": r.document,
                "sequence": r.sequence,
                "kind": r.kind,
                "unit": r.unit,
                "sbxlh": r.device,
                "zjgxlh": r.body,
                "row": r.row,
                "col": r.column,
                "ywlsh": r.serial,
                "operated_at": r.operated_at,
                "destination": r.destination,
                "planned_return": r.planned_return,
                "anomaly": r.anomaly,
            })
        })
        .collect();
    Ok(Json(
        json!({"access_records": records, "page": page.number, "per_page": page.size}),
    ))
}

#[derive(Deserialize)]
struct AlertQuery {
    kind: Option<String>,
}

async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let kind = query.kind.unwrap_or_default();
    let items = alert_items(&state, &scope, &kind).await?;
    Ok(Json(json!({"alerts": items})))
}

/// Every alert `scope` sees, of one kind (`kind` "" for all), as `GET /api/v1/alerts` lists
/// them (the department page lists the same).
pub(crate) async fn alert_items(
    state: &AppState,
    scope: &Scope,
    kind: &str,
) -> Result<Vec<Value>, WireError> {
    let found = reader(state)
        .alerts(scope.units(), Some(kind).filter(|k| !k.is_empty()))
        .await?;
    let mut items: Vec<Value> = found
        .raised
        .into_iter()
        .map(|a| {
            json!({
                "kind": a.kind,
                "unit": a.unit,
                "subject": {"type": a.aggregate_type, "id": a.aggregate_id, "sequence": a.sequence},
                "detail": serde_json::from_str::<Value>(&a.detail).ok(),
                "raised_at": a.raised_at,
            })
        })
        .collect();
    items.extend(found.rejected_reports.into_iter().map(|report| {
        let r = report.rejection;
        json!({
            "kind": read::alerts::REJECTED_REPORT,
            "unit": report.unit,
            "subject": {"type": "Report", "id": r.id, "ei": r.ei, "ywlsh": r.ywlsh},
            "detail": {"mstype": r.mstype, "error_code": r.error_code,
                       "error_msg": r.error_message},
            "raised_at": china_time(r.received_ms),
        })
    }));
    // Reconciliation alerts (missing uploads, unrepaired deviations): api/src/reconciliations.rs.
    items.extend(crate::reconciliations::alerts(state, scope, kind).await?);
    Ok(items)
}

async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let today = china_date(state.commands.clock().now());
    let stats = reader(&state).stats(scope.units(), today).await?;
    Ok(Json(json!({
        "documents_by_state": stats.documents_by_state,
        "withdrawals_per_day": stats.withdrawals_per_day,
        "destinations": stats.destinations,
        "overdue": stats.overdue,
    })))
}
