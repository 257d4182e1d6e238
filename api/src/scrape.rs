//! `GET /metrics`: Prometheus metrics (OpenMetrics text), for an operator token.
//!
//! Two kinds: what happens is counted as it happens ([`crate::metrics::Metrics`]); where things
//! stand (projection positions and lag, the outbox, cabinets' heartbeats, the last days'
//! reconciliation uploads, the pools) is read here at each scrape, so a
//! scrape always shows the state of that moment and nothing is kept up to date in the
//! background. docs/operations.md lists every metric; deploy/ has the dashboard and alert rules,
//! and a test checks every name they use is exported.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use custody_domain::transitions::Named as _;
use custody_eventlog::{Backend, BatchStats};
use custody_projections::Projection;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::auth::{Caller, Role};
use crate::error::WireError;
use crate::metrics::Labels;
use crate::state::AppState;

/// A counter of the batched writes: its name, its help, and what it counts.
type BatchCounter = (&'static str, &'static str, fn(&BatchStats) -> u64);

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
    let depth = state
        .processes
        .outbox_depth()
        .await
        .map_err(|e| WireError::internal("outbox", e))?;
    outbox.get_or_create(&vec![]).set(depth.pending);
    failing.get_or_create(&vec![]).set(depth.failing);

    // The business clock (the one heartbeats and business dates are recorded by).
    let business_now = state.commands.clock().now();
    let cabinets = gauges(
        &mut registry,
        "custody_cabinets_by_heartbeat_age",
        "Cabinets by state and the age of their latest heartbeat (under_15m, 15m_to_1h, \
         1h_to_24h, over_24h, never)",
    );
    let ages = crate::read::reader(state)
        .cabinets_by_heartbeat_age(business_now.timestamp_millis())
        .await?;
    for ((cabinet_state, age), count) in ages {
        cabinets
            .get_or_create(&vec![
                ("state", cabinet_state.name().to_string()),
                ("age", age.name().to_string()),
            ])
            .set(count as i64);
    }

    if let Some(last) = state.reconciliation_window.last_closed_date(business_now) {
        let first = last - chrono::Days::new(RECONCILIATION_DAYS - 1);
        let uploads = gauges(
            &mut registry,
            "custody_reconciliation_uploads",
            "Nightly batches reconciled for each of the last 7 closed business dates",
        );
        let missing = gauges(
            &mut registry,
            "custody_reconciliation_missing_uploads",
            "Active cabinets that sent no batch for each of the last 7 closed business dates \
             (found once its window closed, less those a late batch made good)",
        );
        let uploaded = custody_projections::reconciliations::read::uploads_per_date(
            log.platform().pool(),
            first,
            last,
        )
        .await?;
        let not_uploaded = state
            .processes
            .missing_uploads_per_date(first.iter_days().take_while(|d| *d <= last))
            .await
            .map_err(|e| WireError::internal("missing uploads", e))?;
        for date in first.iter_days().take_while(|d| *d <= last) {
            let labels = label("business_date", date.to_string());
            uploads
                .get_or_create(&labels)
                .set(uploaded.get(&date).copied().unwrap_or(0));
            missing
                .get_or_create(&labels)
                .set(not_uploaded.get(&date).copied().unwrap_or(0) as i64);
        }
    }

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
    let limits = gauges(
        &mut registry,
        "custody_db_pool_max_connections",
        "Connections each database pool may open at most",
    );
    let acquire = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "custody_db_pool_acquire_seconds",
        "How long this scrape waited to take a connection from each pool: a sample of the \
         wait every query meets now (near 0 unless the pool is exhausted)",
        acquire.clone(),
    );
    let platform = log.platform().pool();
    // Each pool's wait is timed before its counts are read, so the counts include the probe's
    // connection in neither state (it is handed back first).
    let started = Instant::now();
    match log.backend() {
        Backend::Postgres(pool) => drop(pool.acquire().await.map_err(db_unavailable)?),
        Backend::Sqlite(pool) => drop(pool.acquire().await.map_err(db_unavailable)?),
    }
    let events_wait = started.elapsed();
    let started = Instant::now();
    drop(platform.acquire().await.map_err(db_unavailable)?);
    let platform_wait = started.elapsed();
    let (size, idle, max) = match log.backend() {
        Backend::Postgres(pool) => (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ),
        Backend::Sqlite(pool) => (
            pool.size(),
            pool.num_idle(),
            pool.options().get_max_connections(),
        ),
    };
    for (pool, size, idle, max, wait) in [
        ("events", size, idle, max, events_wait),
        (
            "platform",
            platform.size(),
            platform.num_idle(),
            platform.options().get_max_connections(),
            platform_wait,
        ),
    ] {
        let idle = idle as i64;
        let in_use = (i64::from(size) - idle).max(0);
        connections
            .get_or_create(&vec![("pool", pool.into()), ("state", "in_use".into())])
            .set(in_use);
        connections
            .get_or_create(&vec![("pool", pool.into()), ("state", "idle".into())])
            .set(idle);
        limits
            .get_or_create(&label("pool", pool))
            .set(i64::from(max));
        acquire
            .get_or_create(&label("pool", pool))
            .set(wait.as_secs_f64());
    }

    // What this process's batched writes have done since it started (issue 11): counters,
    // read from the batchers at each scrape.
    let batch_counters: [BatchCounter; 4] = [
        (
            "custody_write_batches",
            "Batch statements of each kind of batched statement of the command path (events, replay_window, person_keys, history_reads) that succeeded",
            |s| s.batches,
        ),
        (
            "custody_write_batch_items",
            "Items those batch statements answered",
            |s| s.items,
        ),
        (
            "custody_write_batch_written",
            "Of those items, the ones written (events appended, request ids fresh, data keys \
             stored or found)",
            |s| s.written,
        ),
        (
            "custody_write_batch_singles_after_failure",
            "Items written one at a time, besides the above, because their batch statement failed",
            |s| s.singles_after_failure,
        ),
    ];
    let batches = log.write_batches();
    for (name, help, value) in batch_counters {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help, family.clone());
        for (kind, stats) in &batches {
            family
                .get_or_create(&label("kind", *kind))
                .inc_by(value(stats));
        }
    }
    let largest = gauges(
        &mut registry,
        "custody_write_batch_largest",
        "The most items one batch statement of each kind held",
    );
    let queued = gauges(
        &mut registry,
        "custody_write_batch_queued",
        "Items of each kind waiting now for a batch",
    );
    for (kind, stats) in &batches {
        let labels = label("kind", *kind);
        largest
            .get_or_create(&labels)
            .set(i64::try_from(stats.largest).unwrap_or(i64::MAX));
        queued
            .get_or_create(&labels)
            .set(i64::try_from(stats.queued).unwrap_or(i64::MAX));
    }

    // The aggregates commands decide on from memory (issue 11, `custody_commands::HOT_AGGREGATES`).
    let hot = state.commands.hot_aggregates();
    let outcomes = Family::<Labels, Counter>::default();
    registry.register(
        "custody_hot_aggregates_commands",
        "Commands by where their first attempt found the aggregate: held in memory (hit), loaded from the store (miss), or held but behind the store and decided again on a load (stale)",
        outcomes.clone(),
    );
    for (outcome, count) in [
        ("hit", hot.hits),
        ("miss", hot.misses),
        ("stale", hot.stale),
    ] {
        outcomes
            .get_or_create(&label("outcome", outcome))
            .inc_by(count);
    }
    let held = Gauge::<i64>::default();
    registry.register(
        "custody_hot_aggregates_held",
        "Aggregates held in memory now",
        held.clone(),
    );
    held.set(i64::try_from(hot.entries).unwrap_or(i64::MAX));
    let capacity = Gauge::<i64>::default();
    registry.register(
        "custody_hot_aggregates_capacity",
        "The most aggregates held in memory",
        capacity.clone(),
    );
    capacity.set(i64::try_from(hot.capacity).unwrap_or(i64::MAX));
    Ok(registry)
}

/// Closed business dates the reconciliation gauges show, the latest last.
const RECONCILIATION_DAYS: u64 = 7;

/// A pool that gives no connection answers as the store does (the error table's mapping).
fn db_unavailable(error: sqlx::Error) -> WireError {
    custody_eventlog::EventLogError::from(error).into()
}

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
