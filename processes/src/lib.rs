//! The process managers (SPEC §4; docs/processes.md).
//!
//! - [`scheduler`]: the return-date scheduler, run by the clock (every `tick_interval`, at least
//!   hourly): `Withdrawn` documents whose planned return date has passed get `ReturnDateReached`.
//! - [`reminders`]: reminders (SPEC §3.5) opened and closed in reaction to document events, sent
//!   by the clock inside 10:00–17:00 China time, at most N a day, into the notification
//!   [`outbox`], which an HTTP webhook adapter drains with retries.
//! - [`cascade`]: the revocation cascade (SPEC §3.2).
//! - [`missing_uploads`]: once a business date's reconciliation window has closed, the active
//!   cabinets that sent no batch for it (SPEC §6), checked by the clock every minute.
//!
//! The reactive ones follow the commit-ordered event log like projectors do, each from its own
//! cursor (`process_cursors`), keeping the state they decide on in their own tables, and issue
//! commands through the command service with idempotency keys, so that replaying after a crash
//! (between a command and the cursor update) changes nothing.

mod cascade;
mod consumer;
pub mod missing_uploads;
mod outbox;
mod reminders;
mod scheduler;

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use custody_commands::{CommandError, Commands};
use custody_domain::reconciliation::ReconciliationWindow;
use custody_eventlog::{EventLogError, Lease};
use custody_projections::feed::FeedError;
use tokio::sync::{watch, Mutex};

use crate::cascade::CascadeHandler;
use crate::consumer::Consumer;
use crate::outbox::Deliverer;
use crate::reminders::RemindersHandler;

pub use consumer::ProcessStatus;
pub use missing_uploads::{check_missing_uploads, check_missing_uploads_for, MissingUpload};
pub use outbox::{DeliveryPass, Notification, OutboxDepth};
pub use reminders::{OpenReminder, SendingPass};
pub use scheduler::ReturnDatePass;

/// How the process managers run.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Reminders sent per reminder and China-time day, at most (SPEC §3.5; default 1).
    pub reminders_per_day: u32,
    /// How often the clock-driven passes run (return dates, then reminders): at most an hour.
    pub tick_interval: Duration,
    /// Where reminders are delivered; None keeps them queued in the outbox.
    pub webhook: Option<WebhookConfig>,
    /// How often a reactive process looks for new events when it has none.
    pub poll: Duration,
    /// Events per batch of a reactive process.
    pub batch: usize,
    /// When cabinets upload their nightly batch: a date's missing uploads are looked for once
    /// its window has closed.
    pub reconciliation_window: ReconciliationWindow,
}

impl ProcessConfig {
    /// SPEC §4: the scheduler runs at least hourly.
    pub const MAX_TICK_INTERVAL: Duration = Duration::from_secs(3600);
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            reminders_per_day: 1,
            tick_interval: Duration::from_secs(300),
            webhook: None,
            poll: Duration::from_millis(200),
            batch: 200,
            reconciliation_window: ReconciliationWindow::default(),
        }
    }
}

/// The HTTP webhook reminders are delivered to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    /// How long one POST may take.
    pub timeout: Duration,
    /// The wait after the first failure; it doubles after each further failure ...
    pub first_retry: Duration,
    /// ... up to this.
    pub max_retry: Duration,
    /// How often the adapter looks for due notifications.
    pub poll: Duration,
}

impl WebhookConfig {
    pub fn new(url: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            url: url.into(),
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(600),
            poll: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] EventLogError),
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// A view the process reads (the reconciliations view) failed.
    #[error(transparent)]
    View(#[from] custody_projections::ProjectionError),
    #[error("command: {0}")]
    Command(#[from] CommandError),
    #[error("stored data does not decode: {0}")]
    Decode(String),
    #[error("webhook client: {0}")]
    Webhook(String),
    /// The test hook [`Processes::catch_up_interrupted_after`] stopped the run.
    #[error("stopped after the allowed number of commands, as a crash would")]
    Interrupted,
    /// Another instance holds the process managers' lease (docs/scaling.md): they run there.
    #[error(
        "this instance does not hold the {0} lease: another instance runs the process managers"
    )]
    NotHolder(String),
    #[error("process {0} did not catch up with the event log within {1:?}")]
    Timeout(&'static str, Duration),
}

/// Told what the process managers did, as they do it (the service's metrics). Every pass
/// reports here, the background ones and those run by hand alike.
pub trait ProcessObserver: Send + Sync {
    /// Reminders sent by one pass (a `Sent` event and a queued notification each).
    fn reminders_sent(&self, sent: usize);
    /// What one webhook delivery pass did.
    fn notifications_delivered(&self, pass: DeliveryPass);
    /// Missing uploads the clock's check newly kept.
    fn missing_uploads_found(&self, found: usize);
}

/// What one clock tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    pub return_dates: ReturnDatePass,
    pub reminders: SendingPass,
}

struct Inner {
    commands: Arc<Commands>,
    config: ProcessConfig,
    reminders: Consumer<RemindersHandler>,
    cascade: Consumer<CascadeHandler>,
    deliverer: Option<Deliverer>,
    observer: Option<Arc<dyn ProcessObserver>>,
    /// One clock tick at a time (the interval and an explicit run).
    tick_gate: Mutex<()>,
    /// The process managers' worker lease, when several instances may share the database: every
    /// pass runs only while this instance holds it.
    lease: Option<Lease>,
}

/// The process managers of one service. Dropping the handle stops their background tasks.
pub struct Processes {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    /// The background tasks by name, so readiness can tell one that ended (a panic).
    tasks: std::sync::Mutex<Vec<(&'static str, tokio::task::JoinHandle<()>)>>,
}

impl Processes {
    /// The process managers over `commands`' log, registering their cursors; nothing runs until
    /// [`Processes::spawn`] (tests drive them by hand).
    pub async fn new(commands: Arc<Commands>, config: ProcessConfig) -> Result<Self, ProcessError> {
        Self::observed(commands, config, None).await
    }

    /// As [`Processes::new`], telling `observer` what every pass did.
    pub async fn observed(
        commands: Arc<Commands>,
        config: ProcessConfig,
        observer: Option<Arc<dyn ProcessObserver>>,
    ) -> Result<Self, ProcessError> {
        Self::leased(commands, config, observer, None).await
    }

    /// As [`Processes::observed`], every pass (background or explicit) running only while this
    /// instance holds `lease`, and the reactive processes' writes fenced by its token.
    pub async fn leased(
        commands: Arc<Commands>,
        config: ProcessConfig,
        observer: Option<Arc<dyn ProcessObserver>>,
        lease: Option<Lease>,
    ) -> Result<Self, ProcessError> {
        let reminders = Consumer::new(
            RemindersHandler,
            commands.clone(),
            config.batch,
            config.poll,
            lease.clone(),
        )
        .await?;
        let cascade = Consumer::new(
            CascadeHandler,
            commands.clone(),
            config.batch,
            config.poll,
            lease.clone(),
        )
        .await?;
        let deliverer = config.webhook.clone().map(Deliverer::new).transpose()?;
        let (shutdown, _) = watch::channel(false);
        Ok(Processes {
            inner: Arc::new(Inner {
                commands,
                config,
                reminders,
                cascade,
                deliverer,
                observer,
                tick_gate: Mutex::new(()),
                lease,
            }),
            shutdown,
            tasks: Default::default(),
        })
    }

    /// As [`Processes::new`], with the background tasks running: the reactive processes, the
    /// clock tick, and the webhook adapter when a URL is configured.
    pub async fn start(
        commands: Arc<Commands>,
        config: ProcessConfig,
        observer: Option<Arc<dyn ProcessObserver>>,
        lease: Option<Lease>,
    ) -> Result<Arc<Self>, ProcessError> {
        let processes = Processes::leased(commands, config, observer, lease).await?;
        processes.spawn();
        Ok(Arc::new(processes))
    }

    /// Starts the background tasks. They hold the shared parts, never this handle, so that
    /// dropping the handle (or [`Processes::stop`]) ends them.
    pub fn spawn(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.inner.clone();
        let stop = self.shutdown.subscribe();
        let task = tokio::spawn(async move { inner.reminders.run(stop).await });
        tasks.push(("reminders", task));
        let inner = self.inner.clone();
        let stop = self.shutdown.subscribe();
        let task = tokio::spawn(async move { inner.cascade.run(stop).await });
        tasks.push(("revocation_cascade", task));

        let inner = self.inner.clone();
        let mut stop = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            let period = inner
                .config
                .tick_interval
                .clamp(Duration::from_millis(10), ProcessConfig::MAX_TICK_INTERVAL);
            // The first run one period after start: waiting loses nothing (a pass marks whatever
            // has become due), and tests that drive ticks by hand are not raced.
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {},
                    _ = stop.changed() => return,
                }
                if !inner.holds_lease() {
                    continue;
                }
                if let Err(error) = inner.tick().await {
                    tracing::warn!(%error, "scheduler tick failed; the next one retries");
                }
            }
        });
        tasks.push(("scheduler", task));

        // The missing-upload check: every minute, each closed business date once (and again
        // after a restart; it is idempotent).
        let inner = self.inner.clone();
        let mut stop = self.shutdown.subscribe();
        let task = tokio::spawn(async move {
            let window = inner.config.reconciliation_window;
            let mut done: Option<chrono::NaiveDate> = None;
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every_minute.tick() => {},
                    _ = stop.changed() => return,
                }
                let date = window.last_closed_date(inner.commands.clock().now());
                if date.is_none() || date == done || !inner.holds_lease() {
                    continue;
                }
                match check_missing_uploads(&inner.commands, window).await {
                    Ok(found) => {
                        done = date;
                        if let Some(observer) = &inner.observer {
                            observer.missing_uploads_found(found);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not check for missing uploads"),
                }
            }
        });
        tasks.push(("missing_uploads", task));

        match &self.inner.deliverer {
            None => tracing::warn!(
                "no reminder webhook configured: reminders stay queued in the outbox \
                 (GET /api/v1/ops/notifications) until the service runs with one"
            ),
            Some(deliverer) => {
                let period = outbox::poll_of(deliverer.config());
                let inner = self.inner.clone();
                let mut stop = self.shutdown.subscribe();
                let task = tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(period) => {},
                            _ = stop.changed() => return,
                        }
                        if !inner.holds_lease() {
                            continue;
                        }
                        if let Err(error) = inner.deliver().await {
                            tracing::warn!(%error, "webhook delivery pass failed");
                        }
                    }
                });
                tasks.push(("outbox", task));
            }
        }
    }

    /// The background tasks that have ended although nothing stopped them (readiness).
    pub fn ended_tasks(&self) -> Vec<&'static str> {
        if *self.shutdown.borrow() {
            return vec![];
        }
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks
            .iter()
            .filter(|(_, task)| task.is_finished())
            .map(|(name, _)| *name)
            .collect()
    }

    /// Stops the background tasks (each finishes the batch in hand).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    pub fn config(&self) -> &ProcessConfig {
        &self.inner.config
    }

    /// Lets the reactive processes handle every event committed so far (and those their own
    /// commands add). Tests call it where they would wait for a projection.
    pub async fn catch_up(&self) -> Result<(), ProcessError> {
        self.inner.catch_up(None).await
    }

    /// Test hook: catches up like [`Processes::catch_up`], but stops with
    /// [`ProcessError::Interrupted`] instead of issuing command number `commands + 1`, recording
    /// nothing of the batch in hand: the state a crash between two commands leaves.
    pub async fn catch_up_interrupted_after(&self, commands: usize) -> Result<(), ProcessError> {
        let budget = AtomicUsize::new(commands);
        self.inner.catch_up(Some(&budget)).await
    }

    /// One clock tick now: the return-date pass, then the reminders due (what the interval runs).
    pub async fn tick(&self) -> Result<TickReport, ProcessError> {
        self.inner.tick().await
    }

    /// One webhook delivery pass now (nothing when no URL is configured).
    pub async fn deliver_notifications(&self) -> Result<DeliveryPass, ProcessError> {
        self.inner.deliver().await
    }

    /// The open reminders (the overdue list), of one unit or of all.
    pub async fn open_reminders(
        &self,
        unit: Option<&str>,
    ) -> Result<Vec<OpenReminder>, ProcessError> {
        reminders::open_reminders(self.inner.pool(), unit).await
    }

    /// Outbox rows, newest first; only the undelivered ones when `pending`.
    pub async fn notifications(
        &self,
        pending: bool,
        limit: i64,
    ) -> Result<Vec<Notification>, ProcessError> {
        outbox::list(self.inner.pool(), pending, limit).await
    }

    /// How many notifications wait for delivery, and how many of them last failed.
    pub async fn outbox_depth(&self) -> Result<OutboxDepth, ProcessError> {
        outbox::depth(self.inner.pool()).await
    }

    /// Missing uploads not made good since, for each of `dates`.
    pub async fn missing_uploads_per_date(
        &self,
        dates: impl IntoIterator<Item = chrono::NaiveDate>,
    ) -> Result<std::collections::BTreeMap<chrono::NaiveDate, usize>, ProcessError> {
        missing_uploads::missing_uploads_per_date(self.inner.pool(), dates).await
    }

    /// Where each reactive process stands.
    pub async fn status(&self) -> Result<Vec<ProcessStatus>, ProcessError> {
        Ok(vec![
            self.inner.reminders.status().await?,
            self.inner.cascade.status().await?,
        ])
    }

    pub fn webhook_configured(&self) -> bool {
        self.inner.deliverer.is_some()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl Inner {
    fn pool(&self) -> &sqlx::AnyPool {
        self.commands.log().platform().pool()
    }

    fn holds_lease(&self) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|lease| lease.token().is_some())
    }

    /// The lease's name and token while this instance holds it (None: no lease is used).
    fn fence(&self) -> Result<Option<(&str, i64)>, ProcessError> {
        held(self.lease.as_ref())
    }

    async fn catch_up(&self, budget: Option<&AtomicUsize>) -> Result<(), ProcessError> {
        // Reactions add events that call for reactions in turn (a cancellation closes a
        // reminder, whose `Closed` the reminder process then records): a few rounds settle them
        // all; a busy log is never chased for ever.
        for _ in 0..4 {
            let handled =
                self.cascade.catch_up(budget).await? + self.reminders.catch_up(budget).await?;
            if handled == 0 {
                break;
            }
        }
        Ok(())
    }

    async fn tick(&self) -> Result<TickReport, ProcessError> {
        let _gate = self.tick_gate.lock().await;
        // Not fenced statement by statement: its commands are idempotent by key, so a pass that
        // overlaps the next holder's (a pause past the TTL) adds nothing twice.
        self.fence()?;
        // The process's documents first, so that a lend just recorded is judged too.
        self.catch_up(None).await?;
        let now = self.commands.clock().now();
        let return_dates = scheduler::mark_due(&self.commands, self.pool(), now).await?;
        // Open the reminders those marks call for before sending what is due.
        self.catch_up(None).await?;
        let reminders = reminders::send_due(
            &self.commands,
            self.pool(),
            now,
            self.config.reminders_per_day,
        )
        .await?;
        if let Some(observer) = &self.observer {
            observer.reminders_sent(reminders.sent);
        }
        // Queue the notifications of what was just sent.
        self.catch_up(None).await?;
        Ok(TickReport {
            return_dates,
            reminders,
        })
    }

    async fn deliver(&self) -> Result<DeliveryPass, ProcessError> {
        match &self.deliverer {
            None => Ok(DeliveryPass::default()),
            Some(deliverer) => {
                let fence = self.fence()?;
                let now = self.commands.clock().now().timestamp_millis();
                let pass = deliverer.deliver_due(self.pool(), now, fence).await?;
                if let Some(observer) = &self.observer {
                    observer.notifications_delivered(pass);
                }
                Ok(pass)
            }
        }
    }
}

/// The name and token of `lease` while this instance holds it; None when no lease is used.
pub(crate) fn held(lease: Option<&Lease>) -> Result<Option<(&str, i64)>, ProcessError> {
    match lease {
        None => Ok(None),
        Some(lease) => match lease.token() {
            Some(token) => Ok(Some((lease.name(), token))),
            None => Err(ProcessError::NotHolder(lease.name().to_string())),
        },
    }
}
