//! One repository type over both backends, so the rest of the system has one concrete store.
//!
//! A commit of one event (nearly every command) is appended by a single INSERT on its own:
//! one statement is one transaction on both backends, so it is as atomic as cqrs-es's
//! BEGIN, INSERT, COMMIT, and the primary key and the idempotency index decide it the same
//! way, in one round trip instead of three (issue 11). Commits of several events keep the
//! backends' own transaction.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;
use sqlx::{PgPool, SqlitePool};

pub enum Repository {
    Postgres(PostgresEventRepository, PgPool),
    Sqlite(SqliteEventRepository, SqlitePool),
}

/// The columns postgres-es and sqlite-es insert; the rest fill themselves.
const INSERT_ONE_POSTGRES: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_ONE_SQLITE: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, \
     event_type, event_version, payload, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)";

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

/// One event in one statement, on either backend's pool (the binds are the same; the pool
/// types differ, hence a macro).
macro_rules! insert_one {
    ($pool:expr, $sql:expr, $aggregate_type:expr, $event:expr) => {
        sqlx::query($sql)
            .bind($aggregate_type)
            .bind($event.aggregate_id.as_str())
            .bind(sequence($event)?)
            .bind(&$event.event_type)
            .bind(&$event.event_version)
            .bind(&$event.payload)
            .bind(&$event.metadata)
            .execute($pool)
            .await
            .map(|_| ())
            .map_err(insert_error)
    };
}

fn sequence(event: &SerializedEvent) -> Result<i64, PersistenceError> {
    i64::try_from(event.sequence).map_err(|e| PersistenceError::UnknownError(Box::new(e)))
}

impl PersistedEventRepository for Repository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Repository::Postgres(r, _) => r.get_events::<A>(aggregate_id).await,
            Repository::Sqlite(r, _) => r.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Repository::Postgres(r, _) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
            Repository::Sqlite(r, _) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Snapshots are not used (see the crate docs).
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match (self, events) {
            (Repository::Postgres(_, pool), [event]) => {
                insert_one!(pool, INSERT_ONE_POSTGRES, A::TYPE, event)
            }
            (Repository::Sqlite(_, pool), [event]) => {
                insert_one!(pool, INSERT_ONE_SQLITE, A::TYPE, event)
            }
            (Repository::Postgres(r, _), _) => r.persist::<A>(events, None).await,
            (Repository::Sqlite(r, _), _) => r.persist::<A>(events, None).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match self {
            Repository::Postgres(r, _) => r.stream_events::<A>(aggregate_id).await,
            Repository::Sqlite(r, _) => r.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Repository::Postgres(r, _) => r.stream_all_events::<A>().await,
            Repository::Sqlite(r, _) => r.stream_all_events::<A>().await,
        }
    }
}
