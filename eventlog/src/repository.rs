//! One repository type over both backends, so the rest of the system has one concrete store.
//!
//! A commit of one event (nearly every command) goes to the group commit
//! (`group_commit.rs`): appended in one statement with the other commits queued at that
//! moment, each still decided by the primary key and the idempotency index on its own
//! (issue 11). Commits of several events keep the backends' own transaction. An aggregate's
//! history is read with the other loads of that moment (`history_reads.rs`).

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use crate::group_commit::GroupCommit;
use crate::history_reads::HistoryReads;
use crate::log::Backend;

pub struct Repository {
    events: Events,
    appends: GroupCommit,
    reads: HistoryReads,
}

enum Events {
    Postgres(PostgresEventRepository),
    Sqlite(SqliteEventRepository),
}

impl Repository {
    pub(crate) fn new(backend: &Backend, appends: GroupCommit, reads: HistoryReads) -> Self {
        let events = match backend {
            Backend::Postgres(pool) => Events::Postgres(PostgresEventRepository::new(pool.clone())),
            Backend::Sqlite(pool) => Events::Sqlite(SqliteEventRepository::new(pool.clone())),
        };
        Repository {
            events,
            appends,
            reads,
        }
    }
}

impl PersistedEventRepository for Repository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        // Read with the other loads queued at this moment (`crate::history_reads`).
        self.reads.read(A::TYPE, aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match &self.events {
            Events::Postgres(r) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
            Events::Sqlite(r) => r.get_last_events::<A>(aggregate_id, last_sequence).await,
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
        match (&self.events, events) {
            (_, [event]) => self.appends.append(A::TYPE, event.clone()).await,
            (Events::Postgres(r), _) => r.persist::<A>(events, None).await,
            (Events::Sqlite(r), _) => r.persist::<A>(events, None).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match &self.events {
            Events::Postgres(r) => r.stream_events::<A>(aggregate_id).await,
            Events::Sqlite(r) => r.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        match &self.events {
            Events::Postgres(r) => r.stream_all_events::<A>().await,
            Events::Sqlite(r) => r.stream_all_events::<A>().await,
        }
    }
}
