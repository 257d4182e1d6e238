//! One repository type over both backends, so the rest of the system has one concrete store.

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

pub enum Repository {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

impl PersistedEventRepository for Repository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Repository::Postgres(r) => r.get_events::<A>(aggregate_id).await,
            Repository::Sqlite(r) => r.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self {
            Repository::Postgres(r) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
            Repository::Sqlite(r) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
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
        match self {
            Repository::Postgres(r) => r.persist::<A>(events, None).await,
            Repository::Sqlite(r) => r.persist::<A>(events, None).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match self {
            Repository::Postgres(r) => r.stream_events::<A>(aggregate_id).await,
            Repository::Sqlite(r) => r.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match self {
            Repository::Postgres(r) => r.stream_all_events::<A>().await,
            Repository::Sqlite(r) => r.stream_all_events::<A>().await,
        }
    }
}
