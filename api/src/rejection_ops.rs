//! The rejected-reports log for operators (SPEC §9; docs/security.md, "Rejected reports"):
//! a list paged by a cursor that never loads bodies, one refusal's kept body by its id, and
//! the refusals that were only counted.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use custody_eventlog::{Rejection, RejectionSummary};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::read::china_time;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ops/rejections", get(list))
        .route("/api/v1/ops/rejections/{id}", get(one))
}

/// How far back the list shows the refusals that were counted and not kept.
const NOT_KEPT_WINDOW_MS: i64 = 3_600_000;

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    before: Option<i64>,
}

fn listed(r: &RejectionSummary) -> Value {
    json!({
        "id": r.id,
        "received_at": china_time(r.received_ms),
        "mstype": r.mstype,
        "ei": r.ei,
        "reqid": r.reqid,
        "ywlsh": r.ywlsh,
        "http_status": r.http_status,
        "error_code": r.error_code,
        "error_msg": r.error_message,
        "authenticated": r.authenticated,
        "touched_unit": r.touched_unit,
        "source": r.source,
        "envelope_sm3": r.body_sm3,
        "envelope_size": r.body_size,
        "envelope_whole": r.body_whole,
    })
}

/// `GET /api/v1/ops/rejections?limit=&before=`: newest first, no bodies; `next_before` is the
/// cursor of the next page (null on the last).
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Json<Value>, WireError> {
    caller.require(Role::Operator)?;
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let platform = state.commands.log().platform();
    let found = platform.rejections(limit, page.before).await?;
    let next = (found.len() as i64 == limit)
        .then(|| found.last().map(|last| last.id))
        .flatten();
    let since = state.commands.clock().now().timestamp_millis() - NOT_KEPT_WINDOW_MS;
    let not_kept: Vec<Value> = platform
        .not_kept_since(since, 100)
        .await?
        .into_iter()
        .map(|n| {
            json!({"minute": china_time(n.minute_ms), "source": n.source,
                   "error_code": n.error_code, "count": n.count})
        })
        .collect();
    Ok(Json(json!({
        "rejections": found.iter().map(listed).collect::<Vec<_>>(),
        "next_before": next,
        "not_kept_last_hour": not_kept,
    })))
}

/// `GET /api/v1/ops/rejections/{id}`: one refusal with its kept body (`envelope`: the JSON as
/// sent when it parses, else its text).
async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<Value>, WireError> {
    caller.require(Role::Operator)?;
    let Some(Rejection { summary, body }) = state.commands.log().platform().rejection(id).await?
    else {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no rejection {id}"),
        ));
    };
    let envelope: Value = if summary.body_whole {
        serde_json::from_str(&body).unwrap_or(Value::String(body))
    } else {
        Value::String(body)
    };
    let mut answer = listed(&summary);
    answer["envelope"] = envelope;
    Ok(Json(answer))
}
