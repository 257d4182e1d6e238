//! The relay: publishes committed events, in commit order, to a JetStream stream.
//!
//! PostgreSQL (or the embedded store) is the only source of truth; the stream is a copy that
//! can lose its tail (a crash before fsync) or everything (a lost store). So the relay keeps no
//! position of its own: it resumes after the event that the stream's last message carries, and
//! republishes whatever the stream is missing.
//!
//! Every message expects the stream's previous sequence (`Nats-Expected-Last-Sequence`), so the
//! stream only ever grows by the next event in commit order: a message lost in flight makes all
//! later ones of the batch fail instead of leaving a gap, and the stream's last message is
//! always a safe place to resume. `Nats-Msg-Id` also lets the stream drop a republished event
//! within its duplicate window.
//!
//! One relay publishes at a time: on PostgreSQL it holds an advisory lock on a connection of its
//! own (the lock goes when the connection does); the embedded store has a single process anyway.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamError, PublishError};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{InfoError, RawMessageError, RawMessageErrorKind, Stream};
use async_nats::jetstream::{self, context::PublishAckFuture};
use custody_eventlog::{Backend, CommittedEvent, EventLog, EventLogError, Lease};
use sqlx::{PgConnection, PgPool};
use tokio::time::Instant;

use crate::feed::wire::{self, StreamSettings};
use crate::feed::{Cursor, FeedError};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event store: {0}")]
    Store(#[from] EventLogError),
    #[error("relay lock: {0}")]
    Lock(#[source] sqlx::Error),
    #[error("NATS connect: {0}")]
    Connect(#[from] async_nats::ConnectError),
    #[error("JetStream stream: {0}")]
    Stream(#[from] CreateStreamError),
    #[error("JetStream stream info: {0}")]
    StreamInfo(#[from] InfoError),
    #[error("the stream's last message: {0}")]
    LastMessage(#[from] RawMessageError),
    #[error("the stream's last message is not a relayed event: {0}")]
    Foreign(#[source] FeedError),
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
    #[error("encode an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the stream did not take event {position} in order (stream sequence {sequence})")]
    OutOfStep { position: i64, sequence: u64 },
}

/// How the relay paces itself.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Events read and published (acks pipelined) per round.
    pub batch: usize,
    /// Pause when there was nothing to publish.
    pub idle: Duration,
    /// How often an idle relay compares the stream with what it published, to notice a stream
    /// that lost messages while nothing new was committed.
    pub check_interval: Duration,
    /// Pause between attempts to take the lock while another relay holds it.
    pub standby: Duration,
    /// Longest pause after an error.
    pub max_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            batch: 256,
            idle: Duration::from_millis(100),
            check_interval: Duration::from_secs(1),
            standby: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the stream holds, as far as this relay knows: the commit-order cursor of its last
/// message and that message's stream sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Published {
    cursor: Cursor,
    stream_sequence: u64,
}

/// The single-publisher lock.
enum Lock {
    /// The embedded store: one process, nothing to share.
    Embedded,
    /// The service's worker lease `relay` (docs/scaling.md): unlike the advisory lock, it ends
    /// when its holder stalls (SIGSTOP), not only when its session does. The stream's expected
    /// last sequence keeps a woken former holder from publishing out of order.
    Leased { lease: Lease, token: Option<i64> },
    Postgres {
        pool: PgPool,
        key: i64,
        /// A connection of its own, outside the pool, so that the lock lives exactly as long
        /// as it does.
        connection: Option<PgConnection>,
        held: bool,
    },
}

impl Lock {
    /// Whether this relay may publish now: takes the lock if it is free, and checks that the
    /// session holding it is still alive. Returns (may publish, newly taken).
    async fn hold(&mut self) -> Result<(bool, bool), RelayError> {
        let (pool, key, connection, held) = match self {
            Lock::Embedded => return Ok((true, false)),
            Lock::Leased { lease, token } => {
                let now = lease.token();
                let fresh = now.is_some() && now != *token;
                *token = now;
                return Ok((now.is_some(), fresh));
            }
            Lock::Postgres {
                pool,
                key,
                connection,
                held,
            } => (pool, key, connection, held),
        };
        let session = match connection {
            Some(session) => session,
            None => connection.insert(pool.acquire().await.map_err(RelayError::Lock)?.detach()),
        };
        let result = if *held {
            sqlx::query("SELECT 1")
                .execute(&mut *session)
                .await
                .map(|_| (true, false))
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(*key)
                .fetch_one(&mut *session)
                .await
                .map(|taken| (taken, taken))
        };
        match result {
            Ok((publisher, fresh)) => {
                *held = publisher;
                Ok((publisher, fresh))
            }
            Err(e) => {
                // The session, and any lock it held, is gone: another relay may take over.
                *connection = None;
                *held = false;
                Err(RelayError::Lock(e))
            }
        }
    }

    fn holds(&self) -> bool {
        match self {
            Lock::Embedded => true,
            Lock::Leased { lease, .. } => lease.token().is_some(),
            Lock::Postgres { held, .. } => *held,
        }
    }
}

/// The advisory-lock key of one stream's relay: FNV-1a, stable across builds and processes.
fn lock_key(stream: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in "custody-relay:".bytes().chain(stream.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// NATS connection options shared by the relay, the JetStream feed and the checkpoint witness:
/// reconnect forever, quickly (the default backoff grows to 4 s), and do not wait for the first
/// connection either: ingress needs only the store, so a service started while NATS is down
/// takes reports at once, and the relay and the feeds (which create their stream and consumers
/// on their first round, retrying) catch up when NATS comes.
pub fn connect_options() -> async_nats::ConnectOptions {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(100).min(1_000))
        })
}

/// The servers of `--nats-url`: one URL, or several of one cluster comma-separated; the client
/// tries them in turn and learns the rest of the cluster from whichever answers.
pub fn servers(url: &str) -> Vec<&str> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// A JetStream context with the timeout every publisher here uses.
pub fn jetstream_context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client)
}

/// What readiness asks of a relay, shared with the task that runs it: is its NATS connection up,
/// and how long ago did a round last succeed (a relay that keeps failing is stalled).
#[derive(Clone)]
pub struct RelayHealth {
    client: async_nats::Client,
    last_round: Arc<Mutex<Instant>>,
}

impl RelayHealth {
    pub fn connected(&self) -> bool {
        matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        )
    }

    /// Time since the last round that ended without an error (publishing or on standby).
    pub fn since_last_round(&self) -> Duration {
        self.last_round
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    fn round_succeeded(&self) {
        *self.last_round.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
}

/// Publishes committed events to the stream. See the module documentation.
pub struct Relay {
    health: RelayHealth,
    log: EventLog,
    settings: StreamSettings,
    config: RelayConfig,
    js: jetstream::Context,
    lock: Lock,
    /// None: unknown; read from the stream before publishing.
    published: Option<Published>,
    last_check: Instant,
}

impl Relay {
    /// Connects to NATS at `nats_url`. Nothing is published until [`Relay::publish_pending`]
    /// or [`Relay::run`].
    pub async fn connect(
        log: EventLog,
        nats_url: &str,
        settings: StreamSettings,
    ) -> Result<Self, RelayError> {
        let client = connect_options().connect(servers(nats_url)).await?;
        Ok(Self::new(log, client, settings))
    }

    /// A relay over an existing NATS client.
    pub fn new(log: EventLog, client: async_nats::Client, settings: StreamSettings) -> Self {
        let lock = match log.backend() {
            Backend::Postgres(pool) => Lock::Postgres {
                pool: pool.clone(),
                key: lock_key(&settings.stream),
                connection: None,
                held: false,
            },
            Backend::Sqlite(_) => Lock::Embedded,
        };
        Relay {
            health: RelayHealth {
                client: client.clone(),
                last_round: Arc::new(Mutex::new(Instant::now())),
            },
            log,
            js: jetstream_context(client),
            settings,
            config: RelayConfig::default(),
            lock,
            published: None,
            last_check: Instant::now(),
        }
    }

    /// Publishes only while this instance holds `lease`, instead of the advisory lock.
    pub fn with_lease(mut self, lease: Lease) -> Self {
        self.lock = Lock::Leased { lease, token: None };
        self
    }

    pub fn with_config(mut self, config: RelayConfig) -> Self {
        self.config = config;
        self
    }

    /// A handle on this relay's health that stays valid while [`Relay::run`] owns the relay.
    pub fn health(&self) -> RelayHealth {
        self.health.clone()
    }

    pub fn settings(&self) -> &StreamSettings {
        &self.settings
    }

    /// Whether this relay holds the publisher lock (always, on the embedded store).
    pub fn is_publisher(&self) -> bool {
        self.lock.holds()
    }

    /// The cursor of the last event the stream holds, as of this relay's last look (None before
    /// the first, or after an error).
    pub fn published_cursor(&self) -> Option<Cursor> {
        self.published.map(|p| p.cursor)
    }

    /// Publishes every committed event the stream does not have yet and waits for the acks.
    /// Returns how many were stored; 0 also when another relay holds the lock.
    pub async fn publish_pending(&mut self) -> Result<usize, RelayError> {
        if !self.still_publisher().await? {
            return Ok(0);
        }
        // The stream may have lost messages while we were idle: look again now and then.
        let look = self.last_check.elapsed() >= self.config.check_interval;
        let mut published = match self.published {
            Some(published) if !look => published,
            _ => self.read_stream().await?,
        };
        let mut total = 0;
        loop {
            let events = self
                .log
                .read_committed(published.cursor.into(), self.config.batch)
                .await?;
            let full = events.len() == self.config.batch;
            if events.is_empty() {
                break;
            }
            if total > 0 && !self.still_publisher().await? {
                return Ok(total);
            }
            let result = self.publish_batch(published, &events).await;
            match result {
                Ok((after, count)) => {
                    published = after;
                    self.published = Some(after);
                    total += count;
                }
                Err(e) => {
                    // Whatever was stored is in order; the stream tells where to resume.
                    self.published = None;
                    return Err(e);
                }
            }
            if !full {
                break;
            }
        }
        Ok(total)
    }

    /// Whether this relay may publish now (taking the lock if it is free). What it knew of the
    /// stream is forgotten whenever it is not, or was not, the publisher: another relay may
    /// have published meanwhile.
    async fn still_publisher(&mut self) -> Result<bool, RelayError> {
        match self.lock.hold().await {
            Ok((true, fresh)) => {
                if fresh {
                    self.published = None;
                }
                Ok(true)
            }
            Ok((false, _)) => {
                self.published = None;
                Ok(false)
            }
            Err(e) => {
                self.published = None;
                Err(e)
            }
        }
    }

    /// Sends a batch with pipelined acks; returns the new state and how many were stored.
    async fn publish_batch(
        &self,
        mut published: Published,
        events: &[CommittedEvent],
    ) -> Result<(Published, usize), RelayError> {
        let mut pending: Vec<(Cursor, i64, PublishAckFuture)> = Vec::with_capacity(events.len());
        for (offset, committed) in events.iter().enumerate() {
            let cursor = Cursor::from(committed.commit);
            let (headers, payload) = wire::encode(&committed.event, cursor)?;
            let mut message = PublishMessage::build().payload(payload).headers(headers);
            let expected = published.stream_sequence + offset as u64;
            // nats-server before 2.11 reads an expected 0 as "no expectation" (it cannot say
            // "empty"): only the first message into an empty stream goes without.
            if expected > 0 {
                message = message.expected_last_sequence(expected);
            }
            let subject = self.settings.subject(
                &committed.event.aggregate_type,
                &committed.event.aggregate_id,
            );
            let ack = match self.js.send_publish(subject, message).await {
                Ok(ack) => ack,
                Err(e) if pending.is_empty() => return Err(e.into()),
                // Settle what was sent; the next round resends the rest.
                Err(_) => break,
            };
            pending.push((cursor, committed.event.global_position, ack));
        }
        let mut count = 0;
        for (cursor, position, ack) in pending {
            let ack = ack.await?;
            if ack.duplicate || ack.sequence != published.stream_sequence + 1 {
                // Stored elsewhere than right after our last message: re-read the stream.
                return Err(RelayError::OutOfStep {
                    position,
                    sequence: ack.sequence,
                });
            }
            published = Published {
                cursor,
                stream_sequence: ack.sequence,
            };
            count += 1;
        }
        Ok((published, count))
    }

    /// The stream (created if missing) and the cursor of its last message.
    async fn read_stream(&mut self) -> Result<Published, RelayError> {
        let mut stream: Stream = self
            .js
            .get_or_create_stream(self.settings.stream_config())
            .await?;
        let state = stream.info().await?.state.clone();
        self.last_check = Instant::now();
        let last = if state.messages == 0 {
            None
        } else {
            match stream.get_raw_message(state.last_sequence).await {
                Ok(last) => Some(last),
                // The last sequence's message was deleted: the last one left on our subjects.
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {
                    match stream
                        .raw_message_builder()
                        .last_by_subject(format!("{}.>", self.settings.subject_prefix))
                        .send()
                        .await
                    {
                        Ok(last) => Some(last),
                        Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => None,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        let cursor = match last {
            None => Cursor::START,
            Some(last) => wire::decode_cursor(Some(&last.headers)).map_err(RelayError::Foreign)?,
        };
        let published = Published {
            cursor,
            stream_sequence: state.last_sequence,
        };
        // Only news is worth a line: the stream is not where this relay left it.
        if self.published != Some(published) {
            tracing::info!(
                stream = %self.settings.stream,
                sequence = state.last_sequence,
                tx_id = cursor.tx_id,
                position = cursor.position,
                "relay resumes after the stream's last message"
            );
        }
        self.published = Some(published);
        Ok(published)
    }

    /// Publishes until `shutdown` completes: pending events, then a short pause when idle;
    /// after an error (NATS or the database down) a growing pause, then again. Never skips an
    /// event: every round starts from what the stream holds.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        loop {
            let pause = tokio::select! {
                _ = &mut shutdown => return,
                result = self.publish_pending() => match result {
                    Ok(n) => {
                        self.health.round_succeeded();
                        backoff = Duration::from_millis(100);
                        if n > 0 {
                            tracing::debug!(published = n, stream = %self.settings.stream, "relayed");
                            Duration::ZERO
                        } else if self.is_publisher() {
                            self.config.idle
                        } else {
                            self.config.standby
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, stream = %self.settings.stream, "relay round failed; retrying");
                        let pause = backoff;
                        backoff = (backoff * 2).min(self.config.max_backoff);
                        pause
                    }
                },
            };
            if pause > Duration::ZERO {
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lock_key;

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        assert_eq!(lock_key("CUSTODY_EVENTS"), lock_key("CUSTODY_EVENTS"));
        assert_ne!(lock_key("CUSTODY_EVENTS"), lock_key("OTHER"));
    }
}
