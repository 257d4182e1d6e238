//! `GET /health` (the process is alive) and `GET /ready` (it can do its work now).
//!
//! Liveness asks nothing of the database: a service whose PostgreSQL is down is not helped by
//! being restarted, only by being taken out of the load balancer, which is what readiness says.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use crate::state::AppState;

/// A store check slower than this counts as a store that does not answer (the pool would
/// otherwise wait its whole acquire timeout for a server that is gone).
const STORE_CHECK_LIMIT: Duration = Duration::from_secs(3);

/// A relay with no successful round for this long is stalled (its retry pause is at most 5 s).
pub const RELAY_STALL_LIMIT: Duration = Duration::from_secs(15);

/// Liveness: the service answers.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"status": "ok", "store": state.commands.log().backend_name()}))
}

/// Readiness: the store answers and carries every migration of this build, the projectors and
/// process managers run, and with NATS the relay is connected and not stalled. 200 when every
/// check passes, 503 otherwise; the body names each check.
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let log = state.commands.log();
    let mut checks = Map::new();
    let store = tokio::time::timeout(STORE_CHECK_LIMIT, async {
        log.ping().await?;
        log.is_migrated().await
    })
    .await;
    let (store, migrated) = match store {
        Ok(Ok(true)) => ("ok", "ok"),
        Ok(Ok(false)) => ("ok", "behind"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: event store unavailable");
            ("unavailable", "unknown")
        }
        Err(_) => ("unavailable", "unknown"),
    };
    checks.insert("store".into(), store.into());
    checks.insert("migrated".into(), migrated.into());
    let mut ended: Vec<String> = state
        .read_side
        .ended_tasks()
        .into_iter()
        .map(str::to_string)
        .collect();
    ended.extend(
        state
            .processes
            .ended_tasks()
            .into_iter()
            .map(str::to_string),
    );
    checks.insert(
        "workers".into(),
        if ended.is_empty() {
            "ok".into()
        } else {
            json!({"ended": ended})
        },
    );
    if let Some(relay) = state.read_side.relay() {
        checks.insert(
            "nats".into(),
            if relay.connected() {
                "ok"
            } else {
                "disconnected"
            }
            .into(),
        );
        checks.insert(
            "relay".into(),
            if relay.since_last_round() <= RELAY_STALL_LIMIT {
                "ok"
            } else {
                "stalled"
            }
            .into(),
        );
    }
    let ready = checks.values().all(|v| v == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "store": log.backend_name(), "checks": checks})),
    )
}
