//! Leases of the background workers (`migrations/*/0013_worker_leases.sql`; docs/scaling.md).
//!
//! Several instances share one database; each background worker group (the projectors, the
//! process managers, …) runs in exactly one of them at a time, the holder of its lease:
//! - [`Leases`] takes, renews, releases and lists lease rows. Expiry is judged on the
//!   database's clock, so the instances' own clocks need not agree;
//! - every take raises the lease's fencing token. [`fence`] checks, inside a worker's own write
//!   transaction, that the row still carries the token the worker took, and locks the row until
//!   that transaction ends: a take by another instance waits for it, and a holder that was
//!   paused past its expiry (SIGSTOP, a long stall) fails the check instead of writing;
//! - a [`LeaseKeeper`] task per instance takes the leases it can, renews them every
//!   [`LeaseConfig::renew`], and tells the workers through a [`Lease`] handle whether they hold
//!   theirs. A handle also stops answering "held" once its last renewal is older than the TTL
//!   on this process's monotonic clock, so a process that wakes from a pause stops before its
//!   keeper has even run.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection, Row};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Backend, EventLog, EventLogError};

/// The prefix of the instances' heartbeat rows.
pub const INSTANCE_PREFIX: &str = "instance:";

/// How long a lease lasts without renewal, and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    pub ttl: Duration,
    pub renew: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        // Three renewals may fail (a slow statement, a busy database) before the lease goes.
        LeaseConfig {
            ttl: Duration::from_secs(4),
            renew: Duration::from_secs(1),
        }
    }
}

/// One lease row as stored; `live` is judged on the database's clock when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRow {
    pub name: String,
    pub holder: String,
    pub token: i64,
    pub since_ms: i64,
    pub expires_ms: i64,
    pub live: bool,
}

/// The lease table of one database.
#[derive(Clone, Debug)]
pub struct Leases {
    log: EventLog,
}

impl EventLog {
    pub fn leases(&self) -> Leases {
        Leases { log: self.clone() }
    }
}

impl Leases {
    /// The database's clock in epoch milliseconds, as an SQL expression.
    fn now(&self) -> &'static str {
        match self.log.backend() {
            Backend::Postgres(_) => "(extract(epoch from clock_timestamp()) * 1000)::bigint",
            Backend::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        }
    }

    fn ttl_ms(ttl: Duration) -> i64 {
        i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Takes `name` for `holder` if it is free or expired: the new fencing token, or None while
    /// another holder's lease runs.
    pub async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<i64>, EventLogError> {
        let now = self.now();
        let sql = format!(
            "INSERT INTO worker_leases (name, holder, token, since_ms, expires_ms) \
             VALUES ($1, $2, 1, {now}, {now} + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             token = worker_leases.token + 1, since_ms = excluded.since_ms, \
             expires_ms = excluded.expires_ms \
             WHERE worker_leases.expires_ms < excluded.since_ms \
             RETURNING token"
        );
        let token: Option<i64> = sqlx::query_scalar(&sql)
            .bind(name)
            .bind(holder)
            .bind(Self::ttl_ms(ttl))
            .fetch_optional(self.log.platform().pool())
            .await?;
        Ok(token)
    }

    /// Extends `holder`'s lease taken with `token`; false when another instance took it since.
    /// An expired lease nobody took is extended too: nobody else can have written under it.
    pub async fn renew(
        &self,
        name: &str,
        holder: &str,
        token: i64,
        ttl: Duration,
    ) -> Result<bool, EventLogError> {
        let sql = format!(
            "UPDATE worker_leases SET expires_ms = {} + $1 \
             WHERE name = $2 AND holder = $3 AND token = $4",
            self.now()
        );
        let done = sqlx::query(&sql)
            .bind(Self::ttl_ms(ttl))
            .bind(name)
            .bind(holder)
            .bind(token)
            .execute(self.log.platform().pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up at once (a clean stop), keeping its token for the next holder to raise.
    pub async fn release(&self, name: &str, token: i64) -> Result<(), EventLogError> {
        sqlx::query("UPDATE worker_leases SET expires_ms = 0 WHERE name = $1 AND token = $2")
            .bind(name)
            .bind(token)
            .execute(self.log.platform().pool())
            .await?;
        Ok(())
    }

    /// Every lease row, by name.
    pub async fn list(&self) -> Result<Vec<LeaseRow>, EventLogError> {
        let sql = format!(
            "SELECT name, holder, token, since_ms, expires_ms, \
             CASE WHEN expires_ms >= {} THEN 1 ELSE 0 END AS live \
             FROM worker_leases ORDER BY name",
            self.now()
        );
        let rows = sqlx::query(&sql)
            .fetch_all(self.log.platform().pool())
            .await?;
        rows.iter()
            .map(|row| {
                Ok(LeaseRow {
                    name: row.try_get("name")?,
                    holder: row.try_get("holder")?,
                    token: row.try_get("token")?,
                    since_ms: row.try_get("since_ms")?,
                    expires_ms: row.try_get("expires_ms")?,
                    live: row.try_get::<i32, _>("live")? == 1,
                })
            })
            .collect()
    }

    /// How many instances renewed their heartbeat within its TTL (at least 1: this one).
    pub async fn live_instances(&self) -> Result<usize, EventLogError> {
        let sql = format!(
            "SELECT COUNT(*) FROM worker_leases WHERE name LIKE $1 AND expires_ms >= {}",
            self.now()
        );
        let n: i64 = sqlx::query_scalar(&sql)
            .bind(format!("{INSTANCE_PREFIX}%"))
            .fetch_one(self.log.platform().pool())
            .await?;
        Ok(usize::try_from(n).unwrap_or(0).max(1))
    }
}

/// Inside a worker's write transaction: fails with [`EventLogError::Fenced`] unless lease `name`
/// still carries `token`, and holds a lock on the row until the transaction ends, so that a
/// take (an update of the row) waits for it. On PostgreSQL a shared lock (`FOR SHARE`): the
/// workers of one lease (the projectors) still commit side by side. On SQLite a no-op write of
/// the row, which takes the database's write lock, the only lock SQLite has.
pub async fn fence(
    connection: &mut AnyConnection,
    name: &str,
    token: i64,
) -> Result<(), EventLogError> {
    let held = if connection.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT token FROM worker_leases WHERE name = $1 AND token = $2 FOR SHARE")
            .bind(name)
            .bind(token)
            .fetch_optional(&mut *connection)
            .await?
            .is_some()
    } else {
        sqlx::query("UPDATE worker_leases SET token = token WHERE name = $1 AND token = $2")
            .bind(name)
            .bind(token)
            .execute(&mut *connection)
            .await?
            .rows_affected()
            == 1
    };
    if held {
        Ok(())
    } else {
        Err(EventLogError::Fenced {
            lease: name.to_string(),
            token,
        })
    }
}

/// What a worker knows of its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    token: i64,
    /// Last renewal + TTL − one renewal period, on this process's monotonic clock.
    valid_until: Instant,
}

/// A worker's view of one lease, kept up to date by the [`LeaseKeeper`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Lease {
    name: Arc<str>,
    state: watch::Receiver<Option<Held>>,
}

impl Lease {
    /// A lease that is always held, for code that runs alone (tests driving workers by hand).
    pub fn always(name: &str) -> Lease {
        let (sender, state) = watch::channel(Some(Held {
            token: 0,
            valid_until: Instant::now() + Duration::from_secs(100 * 365 * 86_400),
        }));
        // The sender may go: the receiver keeps the last value.
        drop(sender);
        Lease {
            name: name.into(),
            state,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fencing token while this instance holds the lease.
    pub fn token(&self) -> Option<i64> {
        let held = (*self.state.borrow())?;
        (Instant::now() < held.valid_until).then_some(held.token)
    }

    /// Waits until this instance holds the lease; its token (at once when it holds it now).
    pub async fn acquired(&mut self) -> i64 {
        loop {
            if let Some(token) = self.token() {
                return token;
            }
            // A keeper that stopped leaves the lease unheld for good.
            if self.state.changed().await.is_err() && self.token().is_none() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves once the lease taken with `token` is no longer held by this instance.
    pub async fn lost(&mut self, token: i64) {
        loop {
            let valid_until = match *self.state.borrow() {
                Some(held) if held.token == token && Instant::now() < held.valid_until => {
                    held.valid_until
                }
                _ => return,
            };
            tokio::select! {
                changed = self.state.changed() => {
                    if changed.is_err() {
                        // No keeper renews it any more: it lasts until valid_until.
                        tokio::time::sleep_until(valid_until).await;
                        return;
                    }
                }
                () = tokio::time::sleep_until(valid_until) => {}
            }
        }
    }
}

/// Takes and renews this instance's leases, and its heartbeat row, until stopped.
pub struct LeaseKeeper {
    leases: Leases,
    instance: String,
    config: LeaseConfig,
    entries: Vec<(Arc<str>, watch::Sender<Option<Held>>)>,
    heartbeat: Option<Held>,
    /// Told the live instance count after every round.
    on_instances: Option<Box<dyn Fn(usize) + Send + Sync>>,
}

impl LeaseKeeper {
    pub fn new(log: &EventLog, instance: &str, config: LeaseConfig) -> LeaseKeeper {
        LeaseKeeper {
            leases: log.leases(),
            instance: instance.to_string(),
            config,
            entries: Vec::new(),
            heartbeat: None,
            on_instances: None,
        }
    }

    /// The handle of lease `name`, which this keeper will try to take.
    pub fn lease(&mut self, name: &str) -> Lease {
        let (sender, state) = watch::channel(None);
        let name: Arc<str> = name.into();
        self.entries.push((name.clone(), sender));
        Lease { name, state }
    }

    /// Calls `f` with the live instance count after every round.
    pub fn on_instances(&mut self, f: impl Fn(usize) + Send + Sync + 'static) {
        self.on_instances = Some(Box::new(f));
    }

    /// One round: the heartbeat, then each lease renewed or, when free, taken.
    pub async fn round(&mut self) {
        let heartbeat = format!("{INSTANCE_PREFIX}{}", self.instance);
        let started = Instant::now();
        self.heartbeat = self.keep(&heartbeat, self.heartbeat, started).await;
        for i in 0..self.entries.len() {
            let name = self.entries[i].0.clone();
            let current = *self.entries[i].1.borrow();
            let next = self.keep(&name, current, started).await;
            match (current.map(|h| h.token), next.map(|h| h.token)) {
                (None, Some(token)) => {
                    tracing::info!(
                        lease = &*name,
                        token,
                        instance = self.instance,
                        "lease taken"
                    )
                }
                (Some(token), None) => {
                    tracing::warn!(
                        lease = &*name,
                        token,
                        instance = self.instance,
                        "lease lost"
                    )
                }
                _ => {}
            }
            self.entries[i].1.send_replace(next);
        }
        if let Some(on_instances) = &self.on_instances {
            match self.leases.live_instances().await {
                Ok(n) => on_instances(n),
                Err(error) => tracing::debug!(%error, "cannot count the live instances"),
            }
        }
    }

    /// Renews or takes one lease; what is held afterwards. A failed statement keeps what was
    /// held, which the handle's own deadline ends if renewals keep failing.
    async fn keep(&self, name: &str, current: Option<Held>, started: Instant) -> Option<Held> {
        let valid_until = started + self.config.ttl.saturating_sub(self.config.renew);
        match current {
            Some(held) => match self
                .leases
                .renew(name, &self.instance, held.token, self.config.ttl)
                .await
            {
                Ok(true) => Some(Held {
                    token: held.token,
                    valid_until,
                }),
                Ok(false) => None,
                Err(error) => {
                    tracing::warn!(lease = name, %error, "cannot renew the lease");
                    (Instant::now() < held.valid_until).then_some(held)
                }
            },
            None => match self
                .leases
                .try_acquire(name, &self.instance, self.config.ttl)
                .await
            {
                Ok(Some(token)) => Some(Held { token, valid_until }),
                Ok(None) => None,
                Err(error) => {
                    tracing::debug!(lease = name, %error, "cannot take the lease");
                    None
                }
            },
        }
    }

    /// Runs rounds every renewal period until `stop` resolves, then releases what it holds.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        let mut every = tokio::time::interval(self.config.renew);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = every.tick() => self.round().await,
                () = &mut stop => break,
            }
        }
        self.release_all().await;
    }

    /// Gives every held lease up at once (a clean stop), so another instance takes over
    /// without waiting for the TTL.
    pub async fn release_all(&mut self) {
        for (name, sender) in &self.entries {
            if let Some(held) = sender.send_replace(None) {
                if let Err(error) = self.leases.release(name, held.token).await {
                    tracing::warn!(lease = &**name, %error, "cannot release the lease");
                }
            }
        }
        if let Some(held) = self.heartbeat.take() {
            let heartbeat = format!("{INSTANCE_PREFIX}{}", self.instance);
            let _ = self.leases.release(&heartbeat, held.token).await;
        }
    }
}
