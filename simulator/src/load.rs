//! The load generator: many simulated cabinets depositing new documents as fast as the service
//! answers.
//!
//! Reports are signed and sealed before the clock starts (on every core), so the figures are the
//! service's, not the client's crypto. Pre-signed reports carry the time they were signed at, and
//! the service refuses reports more than 300 s old, so the timed phase is bounded by that window
//! as well as by the duration and by the number of reports prepared.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody_protocol::DocumentRecord;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use super::cabinet::{DepositKind, SimulatedCabinet};
use super::error::SimulateError;
use super::generate::{now_millis, random_document_record};
use super::http::{provision_fleet, report_url, OpsClient};

/// Longest accepted `duration`: pre-signed reports must arrive within the service's 300 s
/// freshness window, with room for the preparation itself.
pub const MAX_DURATION: Duration = Duration::from_secs(240);

/// How long after signing a prepared report may still be sent (the service allows 300 s).
const FRESHNESS: Duration = Duration::from_secs(280);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// Simulated cabinets (senders), each enrolled and activated first.
    pub cabinets: usize,
    /// Length of the timed phase.
    pub duration: Duration,
    /// Concurrent senders (requests in flight).
    pub concurrency: usize,
    /// Reports prepared before the timed phase; the run stops early when they run out.
    pub max_requests: usize,
    /// Open loop: start this many reports a second, each on its schedule whatever the answers
    /// before it (at most `concurrency` in flight), and time each from when it was due, so a
    /// service that falls behind shows it in the latency. None: as fast as the senders go.
    pub rate: Option<u32>,
}

impl LoadConfig {
    /// Refuses configurations that cannot run.
    pub fn validate(&self) -> Result<(), SimulateError> {
        let refuse = |message: &str| Err(SimulateError::Options(message.to_owned()));
        if self.cabinets == 0 {
            return refuse("--cabinets must be at least 1");
        }
        if self.concurrency == 0 {
            return refuse("--concurrency must be at least 1");
        }
        if self.max_requests == 0 {
            return refuse("--requests must be at least 1");
        }
        if self.rate == Some(0) {
            return refuse("--rate must be at least 1 report a second");
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return refuse(
                "--duration must be 1 to 240 s: reports are signed beforehand and the service \
                 refuses those older than 300 s",
            );
        }
        Ok(())
    }
}

/// A report ready to send: its URL and JSON body.
#[derive(Debug, Clone)]
pub struct PreparedReport {
    /// `{base}/yth_g1xt/api/v1/{mstype}`.
    pub url: String,
    /// The signed request as JSON.
    pub body: String,
}

/// The cost of preparing reports on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preparation {
    /// Reports prepared.
    pub count: usize,
    /// Wall-clock time of the preparation.
    pub wall: Duration,
    /// Threads used.
    pub threads: usize,
    /// Thread time per report: document record, envelope seal, signature, JSON.
    pub per_report: Duration,
}

/// Deposit reports (`sjsb-zjcq`, optype 11) of `count` distinct random documents, spread
/// round-robin over `cabinets` and their drawers, signed at the current time, prepared on all
/// cores.
pub fn prepare_deposits(
    cabinets: &[SimulatedCabinet],
    base_url: &str,
    count: usize,
) -> Result<(Vec<PreparedReport>, Preparation), SimulateError> {
    let started = Instant::now();
    if cabinets.is_empty() {
        return Err(SimulateError::Options("no cabinets to send from".into()));
    }
    // Distinct documents: a second "new" deposit of the same document would be refused.
    let mut rng = rand::rng();
    let mut seen = HashSet::with_capacity(count);
    let mut records: Vec<DocumentRecord> = Vec::with_capacity(count);
    while records.len() < count {
        let record = random_document_record(&mut rng);
        if seen.insert((record.document_type.clone(), record.document_number.clone())) {
            records.push(record);
        }
    }
    let url = report_url(base_url, super::cabinet::message_type::CUSTODY);
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, count.max(1));
    let chunk = count.div_ceil(threads).max(1);
    let results: Vec<Result<(Vec<PreparedReport>, Duration), SimulateError>> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = records
                .chunks(chunk)
                .enumerate()
                .map(|(chunk_index, chunk_records)| {
                    let url = &url;
                    scope.spawn(move || {
                        let thread_started = Instant::now();
                        let mut prepared = Vec::with_capacity(chunk_records.len());
                        for (offset, record) in chunk_records.iter().enumerate() {
                            let index = chunk_index * chunk + offset;
                            let cabinet = &cabinets[index % cabinets.len()];
                            let drawer = cabinet.drawer(index / cabinets.len());
                            let request =
                                cabinet.deposit(record, &drawer, DepositKind::New, now_millis())?;
                            prepared.push(PreparedReport {
                                url: url.clone(),
                                body: request.to_json()?,
                            });
                        }
                        Ok((prepared, thread_started.elapsed()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|handle| {
                    handle.join().unwrap_or_else(|_| {
                        Err(SimulateError::Options("a preparing thread panicked".into()))
                    })
                })
                .collect()
        });
    let mut prepared = Vec::with_capacity(count);
    let mut thread_time = Duration::ZERO;
    for result in results {
        let (mut part, time) = result?;
        prepared.append(&mut part);
        thread_time += time;
    }
    let per_report = thread_time / u32::try_from(count.max(1)).unwrap_or(u32::MAX);
    Ok((
        prepared,
        Preparation {
            count,
            wall: started.elapsed(),
            threads,
            per_report,
        },
    ))
}

/// Why the timed phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The duration elapsed.
    DurationReached,
    /// Every prepared report was sent.
    ReportsExhausted,
    /// The oldest prepared reports would soon be refused as stale.
    FreshnessWindow,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// The service answered with this status and `error_code` (`-` when the body had none).
    Answered { status: u16, error_code: String },
    /// No answer: timeout, connection refused or reset, ...
    Failed { kind: String },
}

/// Latency percentiles of answered requests (nearest-rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencySummary {
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
    /// Mean.
    pub mean: Duration,
}

impl LatencySummary {
    /// The summary of `latencies`, `None` when empty.
    pub fn of(latencies: &mut [Duration]) -> Option<LatencySummary> {
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            let n = latencies.len();
            let index = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            latencies[index]
        };
        let total: Duration = latencies.iter().sum();
        Some(LatencySummary {
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: latencies[latencies.len() - 1],
            mean: total / u32::try_from(latencies.len()).unwrap_or(u32::MAX),
        })
    }
}

/// The result of the timed phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendSummary {
    /// Requests sent (answered or not).
    pub sent: usize,
    /// Requests the service answered.
    pub answered: usize,
    /// From the first send until the last answer.
    pub elapsed: Duration,
    /// Answers by (HTTP status, `error_code`).
    pub by_outcome: BTreeMap<(u16, String), usize>,
    /// Requests without an answer, by kind.
    pub failures: BTreeMap<String, usize>,
    /// Latency of answered requests.
    pub latency: Option<LatencySummary>,
    /// Why it ended.
    pub stopped_by: StopReason,
}

impl SendSummary {
    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.answered as f64 / seconds
        } else {
            0.0
        }
    }

    /// How many answers were HTTP 200 with `error_code` `"0"`.
    pub fn accepted(&self) -> usize {
        self.by_outcome
            .get(&(200, "0".to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// Sends `reports` from `concurrency` workers until they run out or `deadline` passes (no new
/// request starts after it; those in flight finish). `freshness_limited` says the deadline is
/// the freshness window's rather than the duration's, for the stop reason.
///
/// With a `rate`, report *i* is due at `i / rate` seconds after the start: a sender takes the
/// next report and its due time together, waits until then, and the latency counts from the due
/// time (an open loop: a late answer does not delay the next send, and a sender that could only
/// start late shows it).
pub async fn send_prepared(
    client: &reqwest::Client,
    reports: Vec<PreparedReport>,
    concurrency: usize,
    rate: Option<u32>,
    deadline: Instant,
    freshness_limited: bool,
) -> SendSummary {
    let queue = Arc::new(Mutex::new(reports.into_iter().enumerate()));
    let started = Instant::now();
    let due = move |index: usize| {
        rate.map(|rate| started + Duration::from_secs_f64(index as f64 / f64::from(rate.max(1))))
    };
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let queue = Arc::clone(&queue);
            let client = client.clone();
            tokio::spawn(async move {
                let mut samples: Vec<(Duration, Outcome)> = Vec::new();
                let mut exhausted = false;
                loop {
                    if Instant::now() >= deadline {
                        break;
                    }
                    // A poisoned lock only means another worker panicked; the queue is intact.
                    let next = match queue.lock() {
                        Ok(mut guard) => guard.next(),
                        Err(poisoned) => poisoned.into_inner().next(),
                    };
                    let Some((index, report)) = next else {
                        exhausted = true;
                        break;
                    };
                    let request_started = match due(index) {
                        Some(at) if at >= deadline => break,
                        Some(at) => {
                            tokio::time::sleep_until(at.into()).await;
                            at
                        }
                        None => Instant::now(),
                    };
                    let outcome = send_one(&client, report).await;
                    samples.push((request_started.elapsed(), outcome));
                }
                (samples, exhausted)
            })
        })
        .collect();

    let mut latencies = Vec::new();
    let mut by_outcome = BTreeMap::new();
    let mut failures = BTreeMap::new();
    let mut sent = 0;
    let mut any_exhausted = false;
    for worker in workers {
        let (samples, exhausted) = match worker.await {
            Ok(result) => result,
            Err(err) => {
                *failures.entry(format!("worker failed: {err}")).or_insert(0) += 1;
                continue;
            }
        };
        any_exhausted |= exhausted;
        for (latency, outcome) in samples {
            sent += 1;
            match outcome {
                Outcome::Answered { status, error_code } => {
                    latencies.push(latency);
                    *by_outcome.entry((status, error_code)).or_insert(0) += 1;
                }
                Outcome::Failed { kind } => *failures.entry(kind).or_insert(0) += 1,
            }
        }
    }
    let elapsed = started.elapsed();
    let stopped_by = if any_exhausted {
        StopReason::ReportsExhausted
    } else if freshness_limited {
        StopReason::FreshnessWindow
    } else {
        StopReason::DurationReached
    };
    SendSummary {
        sent,
        answered: latencies.len(),
        elapsed,
        by_outcome,
        failures,
        latency: LatencySummary::of(&mut latencies),
        stopped_by,
    }
}

async fn send_one(client: &reqwest::Client, report: PreparedReport) -> Outcome {
    let response = client
        .post(&report.url)
        .header(CONTENT_TYPE, "application/json")
        .body(report.body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            return Outcome::Failed {
                kind: failure_kind(&err),
            }
        }
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(body) => Outcome::Answered {
            status,
            error_code: serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error_code")?.as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".to_owned()),
        },
        Err(err) => Outcome::Failed {
            kind: failure_kind(&err),
        },
    }
}

fn failure_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else if err.is_body() || err.is_decode() {
        "body cut short".into()
    } else {
        "request failed".into()
    }
}

/// Everything a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// What was run.
    pub config: LoadConfig,
    /// The service's base URL.
    pub base_url: String,
    /// The unit the cabinets belong to.
    pub unit_credit_code: String,
    /// Setting up the unit and cabinets (enroll + activate).
    pub provisioning: Duration,
    /// Client-side preparation (excluded from the figures).
    pub preparation: Preparation,
    /// The timed phase.
    pub summary: SendSummary,
}

/// Runs a whole load test against the service behind `ops`: provisions a unit with
/// `config.cabinets` cabinets, prepares `config.max_requests` deposits, then sends them.
pub async fn run_load(ops: &OpsClient, config: &LoadConfig) -> Result<LoadReport, SimulateError> {
    config.validate()?;
    let provisioning_started = Instant::now();
    let fleet = provision_fleet(ops, config.cabinets, now_millis()).await?;
    let provisioning = provisioning_started.elapsed();

    let cabinets = Arc::new(fleet.cabinets);
    let base_url = ops.base_url().to_owned();
    let signing_started = Instant::now();
    let (reports, preparation) = {
        let cabinets = Arc::clone(&cabinets);
        let base_url = base_url.clone();
        let count = config.max_requests;
        tokio::task::spawn_blocking(move || prepare_deposits(&cabinets, &base_url, count))
            .await
            .map_err(|err| SimulateError::Options(format!("preparation failed: {err}")))??
    };

    let wanted = Instant::now() + config.duration;
    let fresh_until = signing_started + FRESHNESS;
    let deadline = wanted.min(fresh_until);
    let summary = send_prepared(
        ops.client(),
        reports,
        config.concurrency,
        config.rate,
        deadline,
        fresh_until < wanted,
    )
    .await;
    Ok(LoadReport {
        config: config.clone(),
        base_url,
        unit_credit_code: fleet.unit_credit_code,
        provisioning,
        preparation,
        summary,
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = &self.summary;
        let pace = match self.config.rate {
            Some(rate) => {
                format!(", open loop at {rate} reports/s (latency from each one's due time)")
            }
            None => String::new(),
        };
        writeln!(
            f,
            "target {}: {} cabinets of unit {} (enrolled and activated in {:.1} s), {} concurrent senders{pace}",
            self.base_url,
            self.config.cabinets,
            self.unit_credit_code,
            self.provisioning.as_secs_f64(),
            self.config.concurrency
        )?;
        writeln!(
            f,
            "prepared {} deposit reports in {:.1} s on {} threads; client crypto (record, SM4 + SM2 envelope, SM2 signature, JSON) {:.3} ms per report, not in the figures below",
            self.preparation.count,
            self.preparation.wall.as_secs_f64(),
            self.preparation.threads,
            millis(self.preparation.per_report)
        )?;
        let stop = match summary.stopped_by {
            StopReason::DurationReached => "duration reached",
            StopReason::ReportsExhausted => {
                "all prepared reports sent; raise --requests for a longer run"
            }
            StopReason::FreshnessWindow => {
                "prepared reports about to leave the 300 s freshness window"
            }
        };
        writeln!(
            f,
            "sent {} requests in {:.2} s ({stop}); answered {}",
            summary.sent,
            summary.elapsed.as_secs_f64(),
            summary.answered
        )?;
        writeln!(
            f,
            "throughput {:.1} reports/s ({} accepted: HTTP 200, error_code 0)",
            summary.throughput(),
            summary.accepted()
        )?;
        match &summary.latency {
            Some(latency) => writeln!(
                f,
                "latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}  mean {:.2}",
                millis(latency.p50),
                millis(latency.p95),
                millis(latency.p99),
                millis(latency.max),
                millis(latency.mean)
            )?,
            None => writeln!(f, "latency: no answers")?,
        }
        writeln!(f, "answers by HTTP status and error_code:")?;
        for ((status, code), count) in &summary.by_outcome {
            writeln!(f, "  {status}  {code:<24} {count}")?;
        }
        if !summary.failures.is_empty() {
            writeln!(f, "requests without an answer:")?;
            for (kind, count) in &summary.failures {
                writeln!(f, "  {kind:<29} {count}")?;
            }
        }
        Ok(())
    }
}
