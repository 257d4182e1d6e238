//! Group commit (issue 11): the one-event commits of concurrent commands are appended together,
//! one statement (so one transaction and one WAL flush) per short batch.
//!
//! A batch forms by itself, without waiting on a timer: a commit queues, and while every
//! appender is busy the queue fills; the next free appender takes what has queued (up to
//! [`MAX_BATCH`]). Under light load a batch is one event, appended at once.
//!
//! Each command is still decided on its own:
//! - the statement is `INSERT … ON CONFLICT DO NOTHING RETURNING` the primary keys it
//!   appended, so a row whose sequence another writer took, or whose idempotency key is
//!   already in the log, is skipped and its command told "conflict" (the command service
//!   then asks the idempotency index whether it was a duplicate, and otherwise reloads and
//!   decides again), while its batch-mates are appended;
//! - two commits for the same aggregate and sequence never share a batch (the later waits
//!   for the next), so what a skipped row collided with is never ambiguous;
//! - if the batch statement itself fails (a deadlock between two batches on PostgreSQL, a
//!   busy SQLite, a lost connection), each of its events is appended alone, as before group
//!   commit, and gets its own answer.
//!
//! A command's illegal or refused decision never reaches the queue: only decided events do.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::{PgPool, QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::log::Backend;

/// The most events one batch statement appends (SQLite binds 7 × 256 parameters).
pub const MAX_BATCH: usize = 256;
/// Commits that may wait for an appender; a command beyond it waits to queue, so the
/// queue's memory is bounded whatever arrives.
const QUEUE: usize = 4 * MAX_BATCH;

/// Batches in flight at once: SQLite has one writer; on PostgreSQL a few, so that a batch
/// forms while others commit.
fn appenders(backend: &Backend) -> usize {
    match backend {
        Backend::Postgres(_) => 4,
        Backend::Sqlite(_) => 1,
    }
}

const INSERT_ONE_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_ONE_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)";
/// One statement text whatever the batch size, so it stays prepared on every connection.
const INSERT_BATCH_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, \
     sequence, event_type, event_version, payload, metadata) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], \
     $6::jsonb[], $7::jsonb[]) \
     ON CONFLICT DO NOTHING RETURNING aggregate_type, aggregate_id, sequence";

/// What the appenders have done, for metrics and tests.
#[derive(Debug, Default)]
pub struct AppendCounts {
    batches: AtomicU64,
    events: AtomicU64,
    largest: AtomicUsize,
    singles_after_failure: AtomicU64,
}

/// A snapshot of [`AppendCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendStats {
    /// Batch statements run.
    pub batches: u64,
    /// Events appended by them.
    pub events: u64,
    /// The most events one batch held.
    pub largest: usize,
    /// Events appended one by one because their batch statement failed.
    pub singles_after_failure: u64,
}

struct Append {
    aggregate_type: String,
    event: SerializedEvent,
    reply: oneshot::Sender<Result<(), PersistenceError>>,
}

impl Append {
    fn key(&self) -> (&str, &str, usize) {
        (
            &self.aggregate_type,
            &self.event.aggregate_id,
            self.event.sequence,
        )
    }
}

/// The queue in front of the appenders. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    queue: mpsc::Sender<Append>,
    appenders: Arc<Semaphore>,
    width: usize,
    counts: Arc<AppendCounts>,
}

/// While held, no batch starts: commits queue (up to the queue's bound). Dropping it lets
/// them go, together.
pub struct AppendHold {
    _permits: OwnedSemaphorePermit,
}

impl GroupCommit {
    /// Starts the batching task; it ends when the last handle is dropped.
    pub(crate) fn start(backend: Backend) -> GroupCommit {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let width = appenders(&backend);
        let appenders = Arc::new(Semaphore::new(width));
        let counts = Arc::new(AppendCounts::default());
        tokio::spawn(batch_loop(
            backend,
            receiver,
            appenders.clone(),
            counts.clone(),
        ));
        GroupCommit {
            queue,
            appenders,
            width,
            counts,
        }
    }

    /// Appends one event with whatever else is queued; `Err(OptimisticLockError)` when its
    /// sequence or its idempotency key was taken.
    pub(crate) async fn append(
        &self,
        aggregate_type: &str,
        event: SerializedEvent,
    ) -> Result<(), PersistenceError> {
        let (reply, answer) = oneshot::channel();
        let append = Append {
            aggregate_type: aggregate_type.to_string(),
            event,
            reply,
        };
        self.queue
            .send(append)
            .await
            .map_err(|_| stopped("the appender has stopped"))?;
        answer
            .await
            .map_err(|_| stopped("the appender dropped a commit"))?
    }

    /// Holds every batch back until the hold is dropped (a test forms one batch with it).
    pub async fn hold(&self) -> AppendHold {
        let permits = self
            .appenders
            .clone()
            .acquire_many_owned(self.width as u32)
            .await
            .expect("the appenders' semaphore is never closed");
        AppendHold { _permits: permits }
    }

    /// Commits queued and not yet taken into a batch (the one a held batch has taken not
    /// counted).
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub fn stats(&self) -> AppendStats {
        AppendStats {
            batches: self.counts.batches.load(Ordering::Relaxed),
            events: self.counts.events.load(Ordering::Relaxed),
            largest: self.counts.largest.load(Ordering::Relaxed),
            singles_after_failure: self.counts.singles_after_failure.load(Ordering::Relaxed),
        }
    }
}

fn stopped(why: &str) -> PersistenceError {
    PersistenceError::ConnectionError(why.into())
}

async fn batch_loop(
    backend: Backend,
    mut receiver: mpsc::Receiver<Append>,
    appenders: Arc<Semaphore>,
    counts: Arc<AppendCounts>,
) {
    // Commits deferred from a batch that already held their aggregate and sequence.
    let mut waiting: VecDeque<Append> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(append) => waiting.push_back(append),
                None => return,
            }
        }
        // Waiting for an appender is what lets a batch form.
        let Ok(permit) = appenders.clone().acquire_owned().await else {
            return;
        };
        while waiting.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(append) => waiting.push_back(append),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(waiting.len().min(MAX_BATCH));
        let mut later = VecDeque::new();
        {
            let mut keys = HashSet::new();
            for append in waiting.drain(..) {
                let key = append.key();
                let key = (key.0.to_string(), key.1.to_string(), key.2);
                if batch.len() < MAX_BATCH && keys.insert(key) {
                    batch.push(append);
                } else {
                    later.push_back(append);
                }
            }
        }
        waiting = later;
        let backend = backend.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            append_batch(&backend, batch, &counts).await;
            drop(permit);
        });
    }
}

async fn append_batch(backend: &Backend, mut batch: Vec<Append>, counts: &AppendCounts) {
    // One order for every batch, so two batches on PostgreSQL take their keys in the same
    // order and rarely deadlock (if they do, the fallback below answers each event).
    batch.sort_by(|a, b| a.key().cmp(&b.key()));
    let outcome = match backend {
        Backend::Postgres(pool) => insert_batch_postgres(pool, &batch).await,
        Backend::Sqlite(pool) => insert_batch_sqlite(pool, &batch).await,
    };
    match outcome {
        Ok(appended) => {
            counts.batches.fetch_add(1, Ordering::Relaxed);
            counts
                .events
                .fetch_add(appended.len() as u64, Ordering::Relaxed);
            counts.largest.fetch_max(batch.len(), Ordering::Relaxed);
            for append in batch {
                let (aggregate_type, id, sequence) = append.key();
                let key = (aggregate_type.to_string(), id.to_string(), sequence as i64);
                let result = if appended.contains(&key) {
                    Ok(())
                } else {
                    Err(PersistenceError::OptimisticLockError)
                };
                let _ = append.reply.send(result);
            }
        }
        Err(error) => {
            tracing::debug!(%error, events = batch.len(), "batch append failed; appending one by one");
            for append in batch {
                let result = insert_one(backend, &append).await;
                if result.is_ok() {
                    counts.singles_after_failure.fetch_add(1, Ordering::Relaxed);
                }
                let _ = append.reply.send(result);
            }
        }
    }
}

/// The primary keys of the rows a batch statement appended.
type Appended = HashSet<(String, String, i64)>;

fn appended_keys<R: Row>(rows: &[R]) -> Result<Appended, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect()
}

fn sequence(event: &SerializedEvent) -> Result<i64, sqlx::Error> {
    i64::try_from(event.sequence).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

async fn insert_batch_postgres(pool: &PgPool, batch: &[Append]) -> Result<Appended, sqlx::Error> {
    let mut types = Vec::with_capacity(batch.len());
    let mut ids = Vec::with_capacity(batch.len());
    let mut sequences = Vec::with_capacity(batch.len());
    let mut event_types = Vec::with_capacity(batch.len());
    let mut versions = Vec::with_capacity(batch.len());
    let mut payloads = Vec::with_capacity(batch.len());
    let mut metadata = Vec::with_capacity(batch.len());
    for append in batch {
        let event = &append.event;
        types.push(append.aggregate_type.as_str());
        ids.push(event.aggregate_id.as_str());
        sequences.push(sequence(event)?);
        event_types.push(event.event_type.as_str());
        versions.push(event.event_version.as_str());
        payloads.push(&event.payload);
        metadata.push(&event.metadata);
    }
    let rows = sqlx::query(INSERT_BATCH_POSTGRES)
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .bind(&event_types)
        .bind(&versions)
        .bind(&payloads)
        .bind(&metadata)
        .fetch_all(pool)
        .await?;
    appended_keys(&rows)
}

async fn insert_batch_sqlite(pool: &SqlitePool, batch: &[Append]) -> Result<Appended, sqlx::Error> {
    let mut sequences = Vec::with_capacity(batch.len());
    for append in batch {
        sequences.push(sequence(&append.event)?);
    }
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) ",
    );
    insert.push_values(
        batch.iter().zip(&sequences),
        |mut row, (append, sequence)| {
            let event = &append.event;
            row.push_bind(append.aggregate_type.as_str())
                .push_bind(event.aggregate_id.as_str())
                .push_bind(*sequence)
                .push_bind(event.event_type.as_str())
                .push_bind(event.event_version.as_str())
                .push_bind(&event.payload)
                .push_bind(&event.metadata);
        },
    );
    insert.push(" ON CONFLICT DO NOTHING RETURNING aggregate_type, aggregate_id, sequence");
    let rows = insert.build().fetch_all(pool).await?;
    appended_keys(&rows)
}

/// One event in one statement, on either backend's pool (the binds are the same; the pool
/// types differ, hence a macro).
macro_rules! insert_one {
    ($pool:expr, $sql:expr, $append:expr, $sequence:expr) => {
        sqlx::query($sql)
            .bind(&$append.aggregate_type)
            .bind($append.event.aggregate_id.as_str())
            .bind($sequence)
            .bind(&$append.event.event_type)
            .bind(&$append.event.event_version)
            .bind(&$append.event.payload)
            .bind(&$append.event.metadata)
            .execute($pool)
            .await
            .map(|_| ())
            .map_err(insert_error)
    };
}

/// The path before group commit, kept for a batch whose statement failed.
async fn insert_one(backend: &Backend, append: &Append) -> Result<(), PersistenceError> {
    let sequence =
        sequence(&append.event).map_err(|e| PersistenceError::UnknownError(Box::new(e)))?;
    match backend {
        Backend::Postgres(pool) => insert_one!(pool, INSERT_ONE_POSTGRES, append, sequence),
        Backend::Sqlite(pool) => insert_one!(pool, INSERT_ONE_SQLITE, append, sequence),
    }
}

/// As the backends' crates classify their errors; a unique-key violation stays an unknown
/// error with its code, which the store reads as a conflict (store.rs, `persistence_error`).
fn insert_error(error: sqlx::Error) -> PersistenceError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        other => PersistenceError::UnknownError(Box::new(other)),
    }
}
