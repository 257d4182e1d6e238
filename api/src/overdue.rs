//! `GET /api/v1/overdue` (SPEC §7.1): the open reminders of the caller's org subtree, each with
//! its overdue days (today − planned return date, China time, never negative).
//!
//! The list is the reminder process's own record of its reminders (docs/processes.md), not a
//! projection view: the same rows the process sends from, so the list and the reminders cannot
//! disagree. It names documents and holders by ZJBS and RYBS only, so there is nothing to mask;
//! `GET /api/v1/documents/{zjbs}` gives the details.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use custody_domain::reminder::china_date;
use custody_processes::{OpenReminder, ProcessError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::WireError;
use crate::scope::Scope;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/overdue", get(overdue))
}

#[derive(Deserialize, Default)]
pub(crate) struct OverdueQuery {
    /// One unit of the caller's subtree.
    pub unit: Option<String>,
    /// `overdue` or `entered`.
    pub kind: Option<String>,
}

pub(crate) fn process_error(error: ProcessError) -> WireError {
    match error {
        // An explicit pass asked of an instance that does not run the process managers.
        ProcessError::NotHolder(_) => WireError::new(crate::ErrorCode::Conflict, error.to_string()),
        error => WireError::internal("process manager", error),
    }
}

async fn overdue(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<OverdueQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let (today, open) = open_overdue(&state, &scope, &query).await?;
    let items: Vec<Value> = open
        .iter()
        .map(|r| {
            let d = &r.details;
            json!({
                "reminder": r.id,
                "zjbs": d.document.as_str(),
                "rybs": d.holder.as_ref().map(|h| h.as_str()),
                "zjlx": d.document_type.map(|t| t.code()),
                "unit": d.unit.as_ref().map(|u| u.as_str()),
                "sbxlh": d.device.as_ref().map(|s| s.as_str()),
                "kind": d.kind.code(),
                "state": r.state.to_string(),
                "planned_return": d.planned_return.map(|p| p.to_string()),
                "overdue_days": r.overdue_days(today),
                "opened_at": d.opened_at.to_rfc3339(),
                "sent": r.sent,
                "last_sent_at": r.last_sent_at.map(|t| t.to_rfc3339()),
            })
        })
        .collect();
    Ok(Json(json!({"today": today.to_string(), "overdue": items})))
}

/// The open reminders `scope` sees (of one unit and kind when the query names them), longest
/// overdue first, and today's China-time date they are counted on. The department page lists
/// the same.
pub(crate) async fn open_overdue(
    state: &AppState,
    scope: &Scope,
    query: &OverdueQuery,
) -> Result<(NaiveDate, Vec<OpenReminder>), WireError> {
    // Days count in China time, whatever offset the clock's moment carries (one rule:
    // `custody_domain::reminder`).
    let today = china_date(state.commands.clock().now());
    let mut open: Vec<OpenReminder> = state
        .processes
        .open_reminders(query.unit.as_deref().filter(|u| !u.is_empty()))
        .await
        .map_err(process_error)?
        .into_iter()
        .filter(|r| scope.sees(r.details.unit.as_ref().map(|u| u.as_str())))
        .filter(|r| {
            query
                .kind
                .as_deref()
                .is_none_or(|kind| kind.is_empty() || kind == r.details.kind.code())
        })
        .collect();
    // Longest overdue first.
    open.sort_by(|a, b| {
        b.overdue_days(today)
            .cmp(&a.overdue_days(today))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok((today, open))
}
