//! The process managers under faults and configuration, driven by hand over a store of either
//! kind (no service around them, so nothing else runs them meanwhile): the revocation cascade
//! finishes after a crash between two cancellations and never cancels twice; two service
//! instances running the scheduler at once mark a document once; several reminders a day keep to
//! the limit and spread over the window; the webhook adapter retries a failed delivery.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use custody_commands::{Commands, ManualClock};
use custody_domain::cabinet::{Activated, Administrator, CabinetCommand};
use custody_domain::document::{
    ApprovalCheck, CancellationReason, Cancelled, DocumentCommand, DocumentEvent,
};
use custody_domain::identifiers::DocumentId;
use custody_domain::person::PersonCommand;
use custody_domain::reminder::Reminder;
use custody_processes::{ProcessConfig, ProcessError, Processes, WebhookConfig};
use custody_tests::samples::{self, date, time};
use custody_tests::{StoreKind, TestStore};
use serde_json::Value;

/// A store with the command service and the process managers over it, on a set clock.
struct Bench {
    store: TestStore,
    clock: ManualClock,
    commands: Arc<Commands>,
    config: ProcessConfig,
}

impl Bench {
    async fn new(kind: StoreKind, now: &str, config: ProcessConfig) -> Bench {
        let store = TestStore::new(kind).await;
        let clock = ManualClock::at(time(now));
        let commands = Arc::new(Commands::new(store.log.clone(), Arc::new(clock.clone())));
        Bench {
            store,
            clock,
            commands,
            config,
        }
    }

    /// Process managers as a freshly started service has them (nothing in the background).
    async fn processes(&self) -> Processes {
        Processes::new(self.commands.clone(), self.config.clone())
            .await
            .expect("process managers")
    }

    /// A document of the sample holder, deposited in the sample unit's cabinet.
    async fn deposited(&self) -> DocumentId {
        let number = samples::fresh_document_number();
        let zjbs = samples::document_id(&number);
        self.commands
            .document(
                zjbs.as_str(),
                samples::deposit(&number),
                samples::reported(&samples::fresh_serial("RG")),
            )
            .await
            .expect("deposit");
        zjbs
    }

    /// A document deposited and lent, due back on `samples::planned_return()` (2026-12-01).
    async fn lent(&self) -> DocumentId {
        let zjbs = self.deposited().await;
        self.commands
            .document(
                zjbs.as_str(),
                samples::lend(samples::planned_return(), ApprovalCheck::Valid),
                samples::reported(&samples::fresh_serial("CG")),
            )
            .await
            .expect("lend");
        zjbs
    }

    async fn document_events(&self, zjbs: &DocumentId) -> Vec<DocumentEvent> {
        self.store
            .log
            .opened_events_of("Document", zjbs.as_str())
            .await
            .expect("events")
            .into_iter()
            .map(|e| serde_json::from_value(e.payload).expect("document event"))
            .collect()
    }

    async fn cancellations(&self, zjbs: &DocumentId) -> Vec<CancellationReason> {
        self.document_events(zjbs)
            .await
            .into_iter()
            .filter_map(|e| match e {
                DocumentEvent::Cancelled(c) => Some(c.reason),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn the_cascade_finishes_after_a_crash_and_never_cancels_twice() {
    for kind in StoreKind::ALL {
        let bench = Bench::new(kind, "2026-11-23T10:00:00+08:00", ProcessConfig::default()).await;
        let rybs = samples::holder();
        let commands = &bench.commands;
        commands
            .person(rybs.as_str(), samples::submit_filing(), samples::unkeyed())
            .await
            .expect("filing");
        commands
            .person(
                rybs.as_str(),
                PersonCommand::AcceptFiling(samples::answer()),
                samples::unkeyed(),
            )
            .await
            .expect("filed");
        let documents = vec![
            bench.deposited().await,
            bench.lent().await,
            bench.deposited().await,
        ];
        let lost = bench.deposited().await;
        commands
            .document(
                lost.as_str(),
                DocumentCommand::Cancel(Cancelled {
                    reason: CancellationReason::Lost,
                    proof: None,
                }),
                samples::reported(&samples::fresh_serial("ZX")),
            )
            .await
            .expect("lost");
        commands
            .person(
                rybs.as_str(),
                samples::submit_revocation(),
                samples::unkeyed(),
            )
            .await
            .expect("revocation");
        commands
            .person(
                rybs.as_str(),
                PersonCommand::AcceptRevocation(samples::answer()),
                samples::unkeyed(),
            )
            .await
            .expect("revoked");

        let revoked = |reasons: &[CancellationReason]| {
            reasons
                .iter()
                .filter(|r| **r == CancellationReason::FilingRevoked)
                .count()
        };
        let mut counts = Vec::new();
        for zjbs in &documents {
            counts.push(revoked(&bench.cancellations(zjbs).await));
        }
        assert_eq!(counts, [0, 0, 0]);

        // A run that crashes after its first cancellation: one cancelled, progress not recorded.
        let crashed = bench.processes().await;
        assert!(matches!(
            crashed.catch_up_interrupted_after(1).await,
            Err(ProcessError::Interrupted)
        ));
        drop(crashed);
        let mut total = 0;
        for zjbs in &documents {
            total += revoked(&bench.cancellations(zjbs).await);
        }
        assert_eq!(total, 1, "one cancellation before the crash");

        // Restarted, it crashes again two commands in (the first one a replay) ...
        let again = bench.processes().await;
        assert!(matches!(
            again.catch_up_interrupted_after(2).await,
            Err(ProcessError::Interrupted)
        ));
        drop(again);
        let mut total = 0;
        for zjbs in &documents {
            total += revoked(&bench.cancellations(zjbs).await);
        }
        assert_eq!(total, 2);

        // ... and the next start finishes: every document once, the lost one left alone.
        let restarted = bench.processes().await;
        restarted.catch_up().await.expect("catch up");
        restarted.catch_up().await.expect("catch up again");
        for zjbs in &documents {
            assert_eq!(
                bench.cancellations(zjbs).await,
                [CancellationReason::FilingRevoked],
                "{zjbs}"
            );
        }
        assert_eq!(bench.cancellations(&lost).await, [CancellationReason::Lost]);
        let status = restarted.status().await.expect("status");
        assert!(status.iter().all(|s| s.lag == 0), "{status:?}");
    }
}

#[tokio::test]
async fn two_instances_running_the_scheduler_at_once_mark_a_document_once() {
    for kind in StoreKind::ALL {
        let bench = Bench::new(kind, "2026-11-30T12:00:00+08:00", ProcessConfig::default()).await;
        let lent = bench.lent().await;
        let (one, two) = (bench.processes().await, bench.processes().await);
        one.catch_up().await.expect("catch up");
        bench.clock.set(time("2026-12-02T08:00:00+08:00"));
        let (a, b) = tokio::join!(one.tick(), two.tick());
        let (a, b) = (a.expect("tick one"), b.expect("tick two"));
        assert_eq!(
            a.return_dates.marked + b.return_dates.marked,
            1,
            "{a:?} {b:?}"
        );
        let marks = bench
            .document_events(&lent)
            .await
            .into_iter()
            .filter(|e| matches!(e, DocumentEvent::ReturnDateReached(_)))
            .count();
        assert_eq!(marks, 1);
        assert_eq!(one.tick().await.expect("tick").return_dates.marked, 0);
    }
}

#[tokio::test]
async fn several_reminders_a_day_keep_to_the_limit_and_spread_over_the_window() {
    for kind in StoreKind::ALL {
        let config = ProcessConfig {
            reminders_per_day: 2,
            ..ProcessConfig::default()
        };
        let bench = Bench::new(kind, "2026-11-30T12:00:00+08:00", config).await;
        bench.lent().await;
        let processes = bench.processes().await;
        let sent_at = |at: &'static str| {
            bench.clock.set(time(at));
            processes.tick()
        };
        let expected = [
            ("2026-12-02T09:00:00+08:00", 0, "before the window"),
            ("2026-12-02T10:00:00+08:00", 1, "the first of the day"),
            // Two a day over seven hours: the next no sooner than 3.5 hours later.
            ("2026-12-02T13:29:59+08:00", 0, "too soon"),
            ("2026-12-02T13:30:00+08:00", 1, "the second of the day"),
            ("2026-12-02T16:59:59+08:00", 0, "two of two"),
            ("2026-12-03T10:00:00+08:00", 1, "a new day"),
        ];
        for (at, sent, case) in expected {
            let report = sent_at(at).await.expect("tick");
            assert_eq!(report.reminders.sent, sent, "{at}: {case}");
        }
        let open = processes.open_reminders(None).await.expect("open");
        assert_eq!(open.len(), 1);
        let reminder: Reminder = bench.commands.load(&open[0].id).await.expect("reminder");
        assert_eq!(reminder.sent, 3);
        assert_eq!(reminder.sent_on(date(2026, 12, 3)), 1);
        assert_eq!(open[0].overdue_days(date(2026, 12, 3)), 2);
        let queued = processes.notifications(true, 10).await.expect("outbox");
        assert_eq!(queued.len(), 3, "one notification per reminder sent");
    }
}

/// A webhook that answers 500 to its first request and 200 after, keeping what it was sent.
#[derive(Clone, Default)]
struct Webhook {
    calls: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn receive(State(hook): State<Webhook>, headers: HeaderMap, body: String) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    hook.received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((key, body));
    if hook.calls.fetch_add(1, Ordering::SeqCst) == 0 {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Serves `router` on a free loopback port: its address, and the server's task.
pub(crate) async fn serve_on_loopback(
    router: Router,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the webhook");
    let address = listener.local_addr().expect("webhook address");
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (address, server)
}

#[tokio::test]
async fn the_webhook_adapter_retries_a_failed_delivery() {
    for kind in StoreKind::ALL {
        let hook = Webhook::default();
        let (address, server) = serve_on_loopback(
            Router::new()
                .route("/reminders", post(receive))
                .with_state(hook.clone()),
        )
        .await;
        let config = ProcessConfig {
            webhook: Some(WebhookConfig {
                first_retry: Duration::from_secs(30),
                ..WebhookConfig::new(format!("http://{address}/reminders"))
            }),
            ..ProcessConfig::default()
        };
        let bench = Bench::new(kind, "2026-11-30T12:00:00+08:00", config).await;
        // The sample unit's cabinet, with its administrators: the reminder's recipients.
        let administrators = vec![Administrator {
            account: "admin01".into(),
            person: samples::holder().to_string(),
        }];
        bench
            .commands
            .cabinet("XJH-Q2555061", samples::enroll(), samples::unkeyed())
            .await
            .expect("enroll");
        bench
            .commands
            .cabinet(
                "XJH-Q2555061",
                CabinetCommand::Activate(Activated {
                    unit_name: "测试单位".into(),
                    contact: None,
                    contact_phone: None,
                    administrators: administrators.clone(),
                    activated_at: time("2026-11-23T09:00:00+08:00"),
                }),
                samples::unkeyed(),
            )
            .await
            .expect("activate");
        let lent = bench.lent().await;
        let processes = bench.processes().await;
        bench.clock.set(time("2026-12-02T10:00:00+08:00"));
        assert_eq!(processes.tick().await.expect("tick").reminders.sent, 1);

        // The first attempt fails: kept, with its error, for another attempt 30 s later.
        let pass = processes.deliver_notifications().await.expect("deliver");
        assert_eq!((pass.delivered, pass.failed), (0, 1));
        let queued = processes.notifications(true, 10).await.expect("outbox");
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].attempts, 1);
        assert!(
            queued[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("500")),
            "{queued:?}"
        );
        let pass = processes.deliver_notifications().await.expect("deliver");
        assert_eq!((pass.delivered, pass.failed), (0, 0), "not due again yet");

        bench.clock.advance(chrono::Duration::seconds(30));
        let pass = processes.deliver_notifications().await.expect("deliver");
        assert_eq!((pass.delivered, pass.failed), (1, 0));
        assert!(processes
            .notifications(true, 10)
            .await
            .expect("outbox")
            .is_empty());
        let all = processes.notifications(false, 10).await.expect("outbox");
        assert_eq!(all[0].attempts, 2);
        assert!(all[0].delivered_at.is_some());
        let pass = processes.deliver_notifications().await.expect("deliver");
        assert_eq!((pass.delivered, pass.failed), (0, 0), "delivered once");

        // Both attempts carried the same notification and key.
        let received = hook
            .received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0], received[1]);
        let (key, body) = &received[0];
        assert_eq!(key, &all[0].id);
        assert_eq!(body["id"], key.as_str());
        assert_eq!(body["document"], lent.as_str());
        assert_eq!(body["kind"], "overdue");
        assert_eq!(body["planned_return"], "2026-12-01");
        assert_eq!(body["overdue_days"], 1);
        assert_eq!(body["ordinal"], 1);
        assert_eq!(
            body["recipients"],
            serde_json::to_value(&administrators).expect("json")
        );
        server.abort();
    }
}
