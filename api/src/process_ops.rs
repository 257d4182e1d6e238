//! Ops routes of the process managers (docs/processes.md), for operators:
//! - `POST /api/v1/ops/scheduler/run`: one clock tick now (return dates, then reminders due);
//! - `POST /api/v1/ops/notifications/deliver`: one webhook delivery pass now;
//! - `GET /api/v1/ops/notifications?pending=&limit=`: the reminder outbox, newest first;
//! - `GET /api/v1/ops/processes`: each reactive process's cursor and lag, and the configuration.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Caller, Role};
use crate::error::WireError;
use crate::overdue::process_error;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ops/scheduler/run", post(run_scheduler))
        .route("/api/v1/ops/notifications", get(notifications))
        .route("/api/v1/ops/notifications/deliver", post(deliver))
        .route("/api/v1/ops/processes", get(processes))
}

type Answer = Result<(StatusCode, Json<Value>), WireError>;

async fn run_scheduler(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let report = state.processes.tick().await.map_err(process_error)?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "at": state.commands.clock().now().to_rfc3339(),
            "return_dates": {
                "marked": report.return_dates.marked,
                "duplicates": report.return_dates.duplicates,
                "refused": report.return_dates.refused,
            },
            "reminders": {
                "sent": report.reminders.sent,
                "waiting": report.reminders.waiting,
            },
        })),
    ))
}

async fn deliver(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let pass = state
        .processes
        .deliver_notifications()
        .await
        .map_err(process_error)?;
    Ok((
        StatusCode::OK,
        Json(json!({
            "webhook_configured": state.processes.webhook_configured(),
            "delivered": pass.delivered,
            "failed": pass.failed,
        })),
    ))
}

#[derive(Deserialize)]
struct NotificationQuery {
    pending: Option<bool>,
    limit: Option<i64>,
}

async fn notifications(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<NotificationQuery>,
) -> Answer {
    caller.require(Role::Operator)?;
    let rows = state
        .processes
        .notifications(query.pending.unwrap_or(false), query.limit.unwrap_or(100))
        .await
        .map_err(process_error)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|n| {
            json!({
                "id": n.id,
                "reminder": n.reminder,
                "unit": n.unit,
                "status": if n.delivered_at.is_some() { "delivered" } else { "queued" },
                "attempts": n.attempts,
                "queued_at": n.queued_at.map(|t| t.to_rfc3339()),
                "next_attempt_at": n.next_attempt_at.map(|t| t.to_rfc3339()),
                "delivered_at": n.delivered_at.map(|t| t.to_rfc3339()),
                "last_error": n.last_error,
                "payload": n.payload,
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({
            "webhook_configured": state.processes.webhook_configured(),
            "notifications": items,
        })),
    ))
}

async fn processes(State(state): State<AppState>, caller: Caller) -> Answer {
    caller.require(Role::Operator)?;
    let statuses = state.processes.status().await.map_err(process_error)?;
    let config = state.processes.config();
    let items: Vec<Value> = statuses
        .into_iter()
        .map(|s| {
            json!({
                "name": s.name,
                "position": {"tx_id": s.cursor.tx_id, "global_position": s.cursor.position},
                "handled": s.handled,
                "lag_events": s.lag,
            })
        })
        .collect();
    Ok((
        StatusCode::OK,
        Json(json!({
            "processes": items,
            "reminders_per_day": config.reminders_per_day,
            "tick_interval_seconds": config.tick_interval.as_secs(),
            "webhook_configured": state.processes.webhook_configured(),
        })),
    ))
}
