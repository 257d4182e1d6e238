//! `GET /metrics`: Prometheus metrics (OpenMetrics text), for an operator token.
//!
//! Two kinds: what happens (requests, commands, refusals) is counted as it happens in
//! [`Metrics`]; where things stand (projection positions and lag, the outbox, the pools) is
//! read at scrape time, so a scrape always shows the state of that moment and nothing has to be
//! kept up to date in the background. docs/operations.md lists every metric; deploy/ has the
//! dashboard and alert rules, and a test checks every name they use is exported here.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use custody_commands::{CommandObserver, CommandResult};
use custody_eventlog::Backend;
use custody_projections::Projection;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::auth::{Caller, Role};
use crate::error::WireError;
use crate::state::AppState;

type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Counters and histograms of what happens; one per service, shared by every handler.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<Labels, Counter>,
    http_latency: Histograms,
    ingress_requests: Family<Labels, Counter>,
    ingress_latency: Histograms,
    rejected_reports: Family<Labels, Counter>,
    commands: Family<Labels, Counter>,
    command_latency: Histograms,
    command_conflicts: Family<Labels, Counter>,
    events_appended: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let histograms = || Histograms::new_with_constructor(latency_histogram);
        let metrics = Metrics {
            http_requests: Family::default(),
            http_latency: histograms(),
            ingress_requests: Family::default(),
            ingress_latency: histograms(),
            rejected_reports: Family::default(),
            commands: Family::default(),
            command_latency: histograms(),
            command_conflicts: Family::default(),
            events_appended: Family::default(),
            registry: Registry::default(),
        };
        let counters: [(&str, &str, &Family<Labels, Counter>); 6] = [
            (
                "custody_http_requests",
                "HTTP requests by route template, method and status",
                &metrics.http_requests,
            ),
            (
                "custody_ingress_requests",
                "Signed ingress reports by mstype and answered error_code (0: accepted)",
                &metrics.ingress_requests,
            ),
            (
                "custody_rejected_reports",
                "Reports refused and kept in the rejected-reports log, by error code",
                &metrics.rejected_reports,
            ),
            (
                "custody_commands",
                "Commands run, by aggregate type and result",
                &metrics.commands,
            ),
            (
                "custody_command_conflicts",
                "Commits that lost to another writer and were retried, by aggregate type",
                &metrics.command_conflicts,
            ),
            (
                "custody_events_appended",
                "Events appended to the log by this process, by aggregate type",
                &metrics.events_appended,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        let histograms: [(&str, &str, &Histograms); 3] = [
            (
                "custody_http_request_duration_seconds",
                "HTTP request latency by route template",
                &metrics.http_latency,
            ),
            (
                "custody_ingress_request_duration_seconds",
                "Signed ingress report latency by mstype",
                &metrics.ingress_latency,
            ),
            (
                "custody_command_duration_seconds",
                "Command latency (look-up, load, decide, commit, retries) by aggregate type",
                &metrics.command_latency,
            ),
        ];
        for (name, help, family) in histograms {
            registry.register(name, help, family.clone());
        }
        metrics.start_at_zero();
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Every aggregate type's command counters and every refusal code exist from the start, at
    /// 0: a family shows in the exposition only once it has a series, and `rate()` and alerts
    /// need the zero before the first increment.
    fn start_at_zero(&self) {
        use custody_domain as d;
        let aggregates = [
            d::document::Document::AGGREGATE,
            d::person::Person::AGGREGATE,
            d::cabinet::Cabinet::AGGREGATE,
            d::reminder::Reminder::AGGREGATE,
            d::reconciliation::Reconciliation::AGGREGATE,
            d::consent_letter::ConsentLetter::AGGREGATE,
            d::travel_approval::TravelApproval::AGGREGATE,
        ];
        for aggregate in aggregates {
            let by_type = vec![("aggregate", aggregate.to_string())];
            let _ = self.command_conflicts.get_or_create(&by_type);
            let _ = self.events_appended.get_or_create(&by_type);
        }
        for code in crate::ErrorCode::ALL {
            if *code != crate::ErrorCode::RateLimited {
                let _ = self
                    .rejected_reports
                    .get_or_create(&vec![("code", code.as_str().to_string())]);
            }
        }
    }

    /// One HTTP request answered (every route, the ingress too).
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&vec![
                ("route", route.to_string()),
                ("method", method.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.http_latency
            .get_or_create(&vec![("route", route.to_string())])
            .observe(elapsed.as_secs_f64());
    }

    /// One signed report answered with `code` ("0" when accepted); `mstype` is one the service
    /// knows or "other" ([`crate::observe::ingress_answer`]), so a client cannot grow the labels.
    pub fn ingress(&self, mstype: &str, code: &str, elapsed: Duration) {
        self.ingress_requests
            .get_or_create(&vec![
                ("mstype", mstype.to_string()),
                ("code", code.to_string()),
            ])
            .inc();
        self.ingress_latency
            .get_or_create(&vec![("mstype", mstype.to_string())])
            .observe(elapsed.as_secs_f64());
        // As the ingress keeps them: every refusal but the admission's.
        if code != "0" && code != crate::ErrorCode::RateLimited.as_str() {
            self.rejected_reports
                .get_or_create(&vec![("code", code.to_string())])
                .inc();
        }
    }

    /// The whole exposition: the counters, then the state read now from `state`.
    pub async fn render(&self, state: &AppState) -> Result<String, WireError> {
        let mut text = String::new();
        let now = snapshot(state).await?;
        let written = encode_registry(&mut text, &self.registry)
            .and_then(|()| encode_registry(&mut text, &now))
            .and_then(|()| encode_eof(&mut text));
        written.map_err(|e| WireError::internal("encoding the metrics", e))?;
        Ok(text)
    }
}

impl CommandObserver for Metrics {
    fn executed(
        &self,
        aggregate: &'static str,
        result: CommandResult,
        elapsed: Duration,
        conflicts: u32,
        events: usize,
    ) {
        let by_type = vec![("aggregate", aggregate.to_string())];
        let mut by_result = by_type.clone();
        by_result.push(("result", result.as_str().to_string()));
        self.commands.get_or_create(&by_result).inc();
        self.command_latency
            .get_or_create(&by_type)
            .observe(elapsed.as_secs_f64());
        if conflicts > 0 {
            self.command_conflicts
                .get_or_create(&by_type)
                .inc_by(u64::from(conflicts));
        }
        if events > 0 {
            self.events_appended
                .get_or_create(&by_type)
                .inc_by(events as u64);
        }
    }
}

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
    match state.metrics.render(&state).await {
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
