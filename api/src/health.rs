use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::state::AppState;

/// Liveness and readiness: the service answers, and its event store answers a round trip.
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let log = state.commands.log();
    match log.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "store": log.backend_name()})),
        ),
        Err(error) => {
            tracing::warn!(%error, "health check: event store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "store": log.backend_name()})),
            )
        }
    }
}
