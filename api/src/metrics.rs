//! The service's counters and histograms: what happens (requests, commands, refusals), counted
//! as it happens. Where things stand is read at scrape time (the scrape module). A leaf: handlers
//! and the middleware reach it through the state, and it imports none of them.

use std::time::Duration;

use custody_commands::{CommandObserver, CommandResult};
use custody_processes::{DeliveryPass, ProcessObserver};
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::wire::admission::{Refused, Stage};

pub type Labels = Vec<(&'static str, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Admission wait buckets from 1 ms to 256 ms (a request waits at most `max_wait`, 200 ms).
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 9))
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
    admission_refusals: Family<Labels, Counter>,
    admission_waits: Histograms,
    reminders_sent: Counter,
    notifications_delivered: Counter,
    notification_failures: Counter,
    missing_uploads_found: Counter,
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
            admission_refusals: Family::default(),
            admission_waits: Histograms::new_with_constructor(wait_histogram),
            reminders_sent: Counter::default(),
            notifications_delivered: Counter::default(),
            notification_failures: Counter::default(),
            missing_uploads_found: Counter::default(),
            registry: Registry::default(),
        };
        let counters: [(&str, &str, &Family<Labels, Counter>); 7] = [
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
            (
                "custody_admission_refusals",
                "Signed reports refused admission (429), by the bucket that had no token: \
                 source (before authentication), sender or global",
                &metrics.admission_refusals,
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
        registry.register(
            "custody_admission_wait_seconds",
            "Time admitted reports waited for an admission token, by stage (source, \
             authenticated); only reports that waited are observed",
            metrics.admission_waits.clone(),
        );
        let process_counters: [(&str, &str, &Counter); 4] = [
            (
                "custody_reminders_sent",
                "Reminders sent by this process (a Sent event and a queued notification each)",
                &metrics.reminders_sent,
            ),
            (
                "custody_notifications_delivered",
                "Reminder notifications the webhook accepted (2xx)",
                &metrics.notifications_delivered,
            ),
            (
                "custody_notification_delivery_failures",
                "Webhook delivery attempts that failed (each is retried later)",
                &metrics.notification_failures,
            ),
            (
                "custody_missing_uploads_found",
                "Missing reconciliation uploads the clock's check newly found",
                &metrics.missing_uploads_found,
            ),
        ];
        for (name, help, counter) in process_counters {
            registry.register(name, help, counter.clone());
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
        for refused in Refused::ALL {
            let _ = self
                .admission_refusals
                .get_or_create(&vec![("bucket", refused.bucket().to_string())]);
        }
        for stage in Stage::ALL {
            let _ = self
                .admission_waits
                .get_or_create(&vec![("stage", stage.name().to_string())]);
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
    /// knows or "other" (the request middleware bounds it), so a client cannot grow the labels.
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

    /// A report refused admission.
    pub fn admission_refused(&self, refused: Refused) {
        self.admission_refusals
            .get_or_create(&vec![("bucket", refused.bucket().to_string())])
            .inc();
    }

    /// A report admitted at `stage` after waiting `waited` (nothing is observed when it did
    /// not wait, so the histogram's count is the reports that waited).
    pub fn admission_waited(&self, stage: Stage, waited: Duration) {
        if !waited.is_zero() {
            self.admission_waits
                .get_or_create(&vec![("stage", stage.name().to_string())])
                .observe(waited.as_secs_f64());
        }
    }

    /// The whole exposition: these counters, then `now` (the state read at this scrape).
    pub fn encode(&self, now: &Registry) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        encode_registry(&mut text, now)?;
        encode_eof(&mut text)?;
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

impl ProcessObserver for Metrics {
    fn reminders_sent(&self, sent: usize) {
        self.reminders_sent.inc_by(sent as u64);
    }

    fn notifications_delivered(&self, pass: DeliveryPass) {
        self.notifications_delivered.inc_by(pass.delivered as u64);
        self.notification_failures.inc_by(pass.failed as u64);
    }

    fn missing_uploads_found(&self, found: usize) {
        self.missing_uploads_found.inc_by(found as u64);
    }
}
