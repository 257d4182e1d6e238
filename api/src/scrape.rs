//! `GET /metrics`: Prometheus metrics (OpenMetrics text), for an operator token.
//!
//! Two kinds: what happens is counted as it happens ([`crate::metrics::Metrics`]); where things
//! stand (projection positions and lag, the outbox, the pools) is read here at each scrape, so a
//! scrape always shows the state of that moment and nothing is kept up to date in the
//! background. docs/operations.md lists every metric; deploy/ has the dashboard and alert rules,
//! and a test checks every name they use is exported.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use custody_eventlog::Backend;
use custody_projections::Projection;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::{Caller, Role};
use crate::error::WireError;
use crate::metrics::Labels;
use crate::state::AppState;

/// A gauge family registered in `registry` under `name`.
fn gauges(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// Where the service stands now: read from the store and the running parts at each scrape.
async fn snapshot(state: &AppState) -> Result<Registry, WireError> {
    let mut registry = Registry::default();
    let log = state.commands.log();
    let now_ms = chrono::Utc::now().timestamp_millis();

    let head = gauges(
        &mut registry,
        "custody_log_head_position",
        "Global position of the last event a reader can see",
    );
    // Every value is read before a gauge is touched: a family's guard must not be held
    // across an await.
    let head_position = log.committed_head().await?.map_or(0, |h| h.position);
    head.get_or_create(&vec![]).set(head_position);

    let position = gauges(
        &mut registry,
        "custody_projection_position",
        "Global position of the last event each projection applied",
    );
    let lag_events = gauges(
        &mut registry,
        "custody_projection_lag_events",
        "Committed events each projection has not applied yet",
    );
    let lag_seconds = gauges(
        &mut registry,
        "custody_projection_lag_seconds",
        "Age of the oldest event each projection has not applied yet (0 when caught up)",
    );
    for projection in Projection::ALL {
        let status = custody_projections::status(log.platform().pool(), projection)
            .await
            .map_err(|e| WireError::internal("projection status", e))?;
        let labels = label("projection", projection.name());
        position.get_or_create(&labels).set(status.cursor.position);
        let behind = log.count_committed_after(status.cursor.into()).await?;
        lag_events.get_or_create(&labels).set(behind);
        let oldest = if behind == 0 {
            None
        } else {
            log.read_committed(status.cursor.into(), 1).await?.pop()
        };
        let age = oldest
            .and_then(|e| recorded_ms(&e.event.metadata))
            .map_or(0, |recorded| (now_ms - recorded).max(0) / 1000);
        lag_seconds.get_or_create(&labels).set(age);
    }

    let process_position = gauges(
        &mut registry,
        "custody_process_position",
        "Global position of the last event each process manager handled",
    );
    let process_lag = gauges(
        &mut registry,
        "custody_process_lag_events",
        "Committed events each process manager has not handled yet",
    );
    let processes = state
        .processes
        .status()
        .await
        .map_err(|e| WireError::internal("process status", e))?;
    for process in processes {
        let labels = label("process", process.name);
        process_position
            .get_or_create(&labels)
            .set(process.cursor.position);
        process_lag.get_or_create(&labels).set(process.lag);
    }

    let outbox = gauges(
        &mut registry,
        "custody_outbox_pending",
        "Reminder notifications not yet delivered to the webhook",
    );
    let failing = gauges(
        &mut registry,
        "custody_outbox_failing",
        "Undelivered notifications whose last delivery attempt failed",
    );
    let pending = state
        .processes
        .notifications(true, OUTBOX_COUNT_LIMIT)
        .await
        .map_err(|e| WireError::internal("outbox", e))?;
    outbox.get_or_create(&vec![]).set(pending.len() as i64);
    failing
        .get_or_create(&vec![])
        .set(pending.iter().filter(|n| n.last_error.is_some()).count() as i64);

    if let Some(relay) = state.read_side.relay() {
        let since = gauges(
            &mut registry,
            "custody_relay_seconds_since_last_round",
            "Seconds since the relay's last round without an error",
        );
        since
            .get_or_create(&vec![])
            .set(relay.since_last_round().as_secs() as i64);
        let connected = gauges(
            &mut registry,
            "custody_nats_connected",
            "1 while the relay's NATS connection is up",
        );
        connected
            .get_or_create(&vec![])
            .set(i64::from(relay.connected()));
    }

    let connections = gauges(
        &mut registry,
        "custody_db_pool_connections",
        "Database pool connections by pool (events, platform) and state (in_use, idle)",
    );
    let (size, idle) = match log.backend() {
        Backend::Postgres(pool) => (pool.size(), pool.num_idle()),
        Backend::Sqlite(pool) => (pool.size(), pool.num_idle()),
    };
    let platform = log.platform().pool();
    for (pool, size, idle) in [
        ("events", size, idle),
        ("platform", platform.size(), platform.num_idle()),
    ] {
        let idle = idle as i64;
        let in_use = (i64::from(size) - idle).max(0);
        connections
            .get_or_create(&vec![("pool", pool.into()), ("state", "in_use".into())])
            .set(in_use);
        connections
            .get_or_create(&vec![("pool", pool.into()), ("state", "idle".into())])
            .set(idle);
    }
    Ok(registry)
}

/// Outbox rows counted per scrape, at most (a backlog larger than this reads as this).
const OUTBOX_COUNT_LIMIT: i64 = 100_000;

fn recorded_ms(metadata: &serde_json::Value) -> Option<i64> {
    let text = metadata.get("recorded_at")?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// `GET /metrics`, for an operator token (docs/operations.md, "Metrics").
pub async fn scrape(State(state): State<AppState>, caller: Caller) -> Response {
    if let Err(refused) = caller.require(Role::Operator) {
        return refused.into_response();
    }
    let rendered = match snapshot(&state).await {
        Ok(now) => state
            .metrics
            .encode(&now)
            .map_err(|e| WireError::internal("encoding the metrics", e)),
        Err(error) => Err(error),
    };
    match rendered {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}
