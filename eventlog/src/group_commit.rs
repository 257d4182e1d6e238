//! Group commit (issue 11): the one-event commits of concurrent commands are appended together,
//! one statement (so one transaction and one WAL flush) per short batch, by the batcher
//! ([`crate::batcher`]: how a batch forms, its bound, its order, and the fallback to one
//! statement per event when a batch statement fails).
//!
//! Each command is still decided on its own:
//! - the statement is `INSERT … ON CONFLICT DO NOTHING RETURNING` the primary keys it
//!   appended, so a row whose sequence another writer took, or whose idempotency key is
//!   already in the log, is skipped and its command told "conflict" (the command service
//!   then asks the idempotency index whether it was a duplicate, and otherwise reloads and
//!   decides again), while its batch-mates are appended;
//! - two commits for the same aggregate and sequence never share a batch (the later waits
//!   for the next), so what a skipped row collided with is never ambiguous.
//!
//! A command's illegal or refused decision never reaches the queue: only decided events do.

use std::collections::HashSet;

use cqrs_es::persist::{PersistenceError, SerializedEvent};
use sqlx::{PgPool, QueryBuilder, Row, Sqlite, SqlitePool};

use crate::batcher::{BatchHold, BatchStats, BatchWrite, Batcher};
use crate::log::Backend;

/// The most events one batch statement appends (SQLite binds 7 × 256 parameters).
pub const MAX_BATCH: usize = 256;

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

/// A snapshot of what the appenders have done.
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

impl From<BatchStats> for AppendStats {
    fn from(stats: BatchStats) -> Self {
        AppendStats {
            batches: stats.batches,
            events: stats.written,
            largest: stats.largest,
            singles_after_failure: stats.singles_after_failure,
        }
    }
}

pub(crate) struct Append {
    aggregate_type: String,
    event: SerializedEvent,
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

/// The events table's writer of one-event commits.
pub(crate) struct Appender {
    backend: Backend,
}

impl BatchWrite for Appender {
    type Item = Append;
    type Answer = Result<(), PersistenceError>;
    type Key = (String, String, usize);
    const MAX: usize = MAX_BATCH;

    fn key(append: &Append) -> Self::Key {
        let (aggregate_type, id, sequence) = append.key();
        (aggregate_type.to_string(), id.to_string(), sequence)
    }

    async fn write(&self, batch: &[Append]) -> Result<Vec<Self::Answer>, sqlx::Error> {
        let appended = match &self.backend {
            Backend::Postgres(pool) => insert_batch_postgres(pool, batch).await?,
            Backend::Sqlite(pool) => insert_batch_sqlite(pool, batch).await?,
        };
        Ok(batch
            .iter()
            .map(|append| {
                let (aggregate_type, id, sequence) = append.key();
                let key = (aggregate_type.to_string(), id.to_string(), sequence as i64);
                if appended.contains(&key) {
                    Ok(())
                } else {
                    Err(PersistenceError::OptimisticLockError)
                }
            })
            .collect())
    }

    async fn write_one(&self, append: &Append) -> Self::Answer {
        insert_one(&self.backend, append).await
    }

    fn wrote(answer: &Self::Answer) -> bool {
        answer.is_ok()
    }
}

/// The queue in front of the appenders. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GroupCommit {
    appenders: Batcher<Appender>,
}

/// While held, no batch starts: commits queue (up to the queue's bound). Dropping it lets
/// them go, together.
pub type AppendHold = BatchHold;

impl GroupCommit {
    /// Starts the batching task; it ends when the last handle is dropped.
    pub(crate) fn start(backend: Backend) -> GroupCommit {
        let width = appenders(&backend);
        GroupCommit {
            appenders: Batcher::start(Appender { backend }, width),
        }
    }

    /// Appends one event with whatever else is queued; `Err(OptimisticLockError)` when its
    /// sequence or its idempotency key was taken.
    pub(crate) async fn append(
        &self,
        aggregate_type: &str,
        event: SerializedEvent,
    ) -> Result<(), PersistenceError> {
        let append = Append {
            aggregate_type: aggregate_type.to_string(),
            event,
        };
        self.appenders
            .write(append)
            .await
            .map_err(|_| PersistenceError::ConnectionError("the appender has stopped".into()))?
    }

    /// Holds every batch back until the hold is dropped (a test forms one batch with it).
    pub async fn hold(&self) -> AppendHold {
        self.appenders.hold().await
    }

    /// Commits queued and not yet taken into a batch (the one a held batch has taken not
    /// counted).
    pub fn queued(&self) -> usize {
        self.appenders.queued()
    }

    pub fn stats(&self) -> AppendStats {
        self.appenders.stats().into()
    }

    pub(crate) fn batch_stats(&self) -> BatchStats {
        self.appenders.stats()
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
