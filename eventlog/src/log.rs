//! Opening the chosen backend, and the queries the store needs beyond cqrs-es's repository:
//! idempotency look-ups and raw history reads.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use cqrs_es::Aggregate;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Row, SqlitePool};

use std::sync::Arc;

use custody_vault::KeyWrap;

use crate::batcher::BatchStats;
use crate::group_commit::{AppendHold, AppendStats, GroupCommit};
use crate::history_reads::HistoryReads;
use crate::personal::{self, PersonalData, Sealed};
use crate::platform::PlatformStore;
use crate::repository::Repository;
use crate::store::ChainedEventStore;
use crate::tail::CommittedTail;
use crate::EventLogError;

/// The database behind the event store.
#[derive(Clone, Debug)]
pub enum Backend {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The event log: a handle on the chosen backend. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventLog {
    backend: Backend,
    platform: PlatformStore,
    /// The data keys that seal personal fields; `None` only where a test wants plain payloads.
    personal: Option<Arc<PersonalData>>,
    /// Where one-event commits queue to be appended together.
    appends: GroupCommit,
    /// Where aggregate loads queue to be read together.
    reads: HistoryReads,
    /// The latest committed events the feed readers share (`crate::tail`).
    tail: Arc<CommittedTail>,
}

/// Where an event is: enough to find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEventRef {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// The SM3 of the business content of the report that produced it, when it was recorded.
    pub content_sm3: Option<String>,
}

/// An event as stored, with its metadata and commit-order position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub global_position: i64,
}

const EVENT_COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata, global_position";

impl EventLog {
    /// Connects to PostgreSQL and applies `migrations/postgres`.
    pub async fn connect_postgres(url: &str, max_connections: u32) -> Result<Self, EventLogError> {
        let pool = ping_when_idle(PgPoolOptions::new())
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|connection, _| {
                Box::pin(async move {
                    sqlx::Executor::execute(&mut *connection, BOUND_IDLE_TRANSACTIONS).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        let backend = Backend::Postgres(pool);
        Ok(EventLog {
            appends: GroupCommit::start(backend.clone()),
            reads: HistoryReads::start(backend.clone()),
            backend,
            platform: PlatformStore::connect(url, max_connections).await?,
            personal: None,
            tail: Arc::default(),
        })
    }

    /// Opens (creating if needed) the embedded store `custody.db` in `data_dir` and applies
    /// `migrations/sqlite`.
    pub async fn open_embedded(data_dir: &Path) -> Result<Self, EventLogError> {
        let data_directory = |source| EventLogError::DataDirectory {
            path: data_dir.display().to_string(),
            source,
        };
        crate::files::private_directory(data_dir).map_err(data_directory)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join("custody.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The legal record: a commit that was acknowledged survives a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = ping_when_idle(SqlitePoolOptions::new())
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        // SQLite creates its files with the umask's mode; they hold personal data.
        for name in ["custody.db", "custody.db-wal", "custody.db-shm"] {
            crate::files::private_file(&data_dir.join(name)).map_err(data_directory)?;
        }
        let url = format!("sqlite://{}", data_dir.join("custody.db").display());
        let backend = Backend::Sqlite(pool);
        Ok(EventLog {
            appends: GroupCommit::start(backend.clone()),
            reads: HistoryReads::start(backend.clone()),
            backend,
            platform: PlatformStore::connect(&url, 8).await?,
            personal: None,
            tail: Arc::default(),
        })
    }

    /// Seals every personal field appended from now on under its person's data key, wrapped by
    /// `master` (docs/personal-data.md).
    pub fn with_personal_data(mut self, master: Arc<dyn KeyWrap>) -> Self {
        self.personal = Some(Arc::new(PersonalData::new(
            self.platform.pool().clone(),
            master,
        )));
        self
    }

    pub fn personal_data(&self) -> Option<&Arc<PersonalData>> {
        self.personal.as_ref()
    }

    /// Opens the sealed personal fields of events read as stored, in place. Hashes are computed
    /// on the stored form, before this.
    pub async fn open_personal_data<'a>(
        &self,
        events: impl IntoIterator<Item = &'a mut StoredEvent>,
    ) -> Result<(), EventLogError> {
        let items = events
            .into_iter()
            .filter_map(|e| {
                let StoredEvent {
                    aggregate_type,
                    aggregate_id,
                    event_type,
                    payload,
                    ..
                } = e;
                Sealed::of(aggregate_type, aggregate_id, event_type, payload)
            })
            .collect();
        personal::open_all(self.personal.as_deref(), items).await
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub(crate) fn tail(&self) -> &CommittedTail {
        &self.tail
    }

    /// The platform's own tables beside the event log.
    pub fn platform(&self) -> &PlatformStore {
        &self.platform
    }

    /// A short name for health and logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "embedded",
        }
    }

    /// The cqrs-es event store of one aggregate type over this log.
    pub fn store<A: Aggregate>(&self) -> ChainedEventStore<A> {
        let repository = Repository::new(&self.backend, self.appends.clone(), self.reads.clone());
        ChainedEventStore::new(repository, self.personal.clone())
    }

    /// What the group commit has done so far.
    pub fn append_stats(&self) -> AppendStats {
        self.appends.stats()
    }

    /// What the batched history reads have done so far (`crate::history_reads`).
    pub fn history_read_stats(&self) -> BatchStats {
        self.reads.stats()
    }

    /// Holds every history read back until the hold is dropped, so that the loads made
    /// meanwhile are read as one batch (tests of the batched reads use it).
    pub async fn hold_history_reads(&self) -> crate::BatchHold {
        self.reads.hold().await
    }

    /// Holds every one-event commit back until the hold is dropped, so that the commits
    /// made meanwhile are appended as one batch (tests of the group commit use it).
    pub async fn hold_appends(&self) -> AppendHold {
        self.appends.hold().await
    }

    /// What each batched statement of the command path has done: the events' group commit,
    /// the replay window, the new persons' keys (`crate::batcher`) and the aggregates' history
    /// reads (`crate::history_reads`, whose "written" are the reads answered).
    pub fn write_batches(&self) -> [(&'static str, BatchStats); 4] {
        [
            ("events", self.appends.batch_stats()),
            ("history_reads", self.reads.stats()),
            ("replay_window", self.platform.replay_window_stats()),
            (
                "person_keys",
                self.personal
                    .as_ref()
                    .map(|p| p.new_key_stats())
                    .unwrap_or_default(),
            ),
        ]
    }

    /// One-event commits waiting for an appender.
    pub fn queued_appends(&self) -> usize {
        self.appends.queued()
    }

    /// The event that an idempotency key already produced, if any.
    pub async fn find_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<StoredEventRef>, EventLogError> {
        let row_to_ref = |row: &dyn RowAccess| -> Result<StoredEventRef, EventLogError> {
            Ok(StoredEventRef {
                aggregate_type: row.text("aggregate_type")?,
                aggregate_id: row.text("aggregate_id")?,
                sequence: row.int("sequence")?,
                content_sm3: row.optional_text("content_sm3")?,
            })
        };
        match &self.backend {
            Backend::Postgres(pool) => sqlx::query(
                "SELECT aggregate_type, aggregate_id, sequence, \
                 metadata ->> 'content_sm3' AS content_sm3 FROM events \
                 WHERE metadata ->> 'idempotency_key' = $1",
            )
            .bind(key)
            .fetch_optional(pool)
            .await?
            .map(|row| row_to_ref(&row))
            .transpose(),
            Backend::Sqlite(pool) => sqlx::query(
                "SELECT aggregate_type, aggregate_id, sequence, \
                 json_extract(metadata, '$.content_sm3') AS content_sm3 FROM events \
                 WHERE json_extract(metadata, '$.idempotency_key') = ?",
            )
            .bind(key)
            .fetch_optional(pool)
            .await?
            .map(|row| row_to_ref(&row))
            .transpose(),
        }
    }

    /// Every stored event of one aggregate, in sequence order.
    pub async fn events_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
                );
                let rows = sqlx::query(&sql)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| stored_event(row)).collect()
            }
            Backend::Sqlite(pool) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
                );
                let rows = sqlx::query(&sql)
                    .bind(aggregate_type)
                    .bind(aggregate_id)
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| stored_event(row)).collect()
            }
        }
    }

    /// As [`EventLog::events_of`], with the personal fields opened: for readers of what the
    /// events say, not of their stored form (hashes).
    pub async fn opened_events_of(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let mut events = self.events_of(aggregate_type, aggregate_id).await?;
        self.open_personal_data(&mut events).await?;
        Ok(events)
    }

    /// Every aggregate type that has events.
    pub async fn aggregate_types(&self) -> Result<Vec<String>, EventLogError> {
        let sql = "SELECT DISTINCT aggregate_type FROM events ORDER BY aggregate_type";
        Ok(match &self.backend {
            Backend::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
            Backend::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await?,
        })
    }

    /// The ids of every aggregate of one type that has events.
    pub async fn aggregate_ids(&self, aggregate_type: &str) -> Result<Vec<String>, EventLogError> {
        let rows: Vec<String> = match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query_scalar(
                    "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1 \
                     ORDER BY aggregate_id",
                )
                .bind(aggregate_type)
                .fetch_all(pool)
                .await?
            }
            Backend::Sqlite(pool) => {
                sqlx::query_scalar(
                    "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = ? \
                     ORDER BY aggregate_id",
                )
                .bind(aggregate_type)
                .fetch_all(pool)
                .await?
            }
        };
        Ok(rows)
    }

    /// How many events the log holds in all.
    pub async fn count(&self) -> Result<i64, EventLogError> {
        let sql = "SELECT COUNT(*) AS n FROM events";
        match &self.backend {
            Backend::Postgres(pool) => sqlx::query(sql).fetch_one(pool).await?.int("n"),
            Backend::Sqlite(pool) => sqlx::query(sql).fetch_one(pool).await?.int("n"),
        }
    }

    /// Whether every migration this build carries is applied (readiness: a database an older
    /// build left, or one whose migration failed half-way, is not ready).
    pub async fn is_migrated(&self) -> Result<bool, EventLogError> {
        let sql = "SELECT version FROM _sqlx_migrations WHERE success";
        let (migrator, applied): (_, Vec<i64>) = match &self.backend {
            Backend::Postgres(pool) => (
                sqlx::migrate!("../migrations/postgres"),
                sqlx::query_scalar(sql).fetch_all(pool).await?,
            ),
            Backend::Sqlite(pool) => (
                sqlx::migrate!("../migrations/sqlite"),
                sqlx::query_scalar(sql).fetch_all(pool).await?,
            ),
        };
        let expected: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        Ok(expected.iter().all(|version| applied.contains(version)))
    }

    /// Liveness of the database: one round trip.
    pub async fn ping(&self) -> Result<(), EventLogError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
            Backend::Sqlite(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
            }
        }
        Ok(())
    }
}

/// How long PostgreSQL lets a session sit in an open transaction waiting for its client. A
/// client that stalls inside one (SIGSTOP, a frozen VM) would otherwise hold its row locks for
/// ever: the worker lease row a fenced batch locks, the index entries of an append. Past this,
/// the server ends the session, its transaction rolls back, and another instance can take the
/// lease over (docs/scaling.md). 5 s: far above any pause between two statements of our own
/// transactions.
pub(crate) const BOUND_IDLE_TRANSACTIONS: &str = "SET idle_in_transaction_session_timeout = 5000";

/// How long a pooled connection may sit idle and still be handed out without a ping.
pub(crate) const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Pool options that ping a connection before handing it out only when it sat idle for
/// [`PING_AFTER_IDLE`] or more (issue 11). sqlx pings every connection it hands out by
/// default: a round trip more for each statement, a tenth of the service's CPU under load
/// (docs/benchmarks.md). A connection in steady use has just answered; one that sat idle may
/// have been cut (a restarted or failed-over PostgreSQL) and is still checked, and replaced if
/// it does not answer.
pub(crate) fn ping_when_idle<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    options
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
}

/// Column access shared by both backends' rows (JSON columns are text in SQLite, json in
/// PostgreSQL; both decode to `serde_json::Value`).
pub(crate) trait RowAccess {
    fn text(&self, column: &str) -> Result<String, EventLogError>;
    fn int(&self, column: &str) -> Result<i64, EventLogError>;
    fn json(&self, column: &str) -> Result<Value, EventLogError>;
    fn optional_text(&self, column: &str) -> Result<Option<String>, EventLogError>;
}

impl RowAccess for sqlx::postgres::PgRow {
    fn text(&self, column: &str) -> Result<String, EventLogError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, EventLogError> {
        Ok(self.try_get(column)?)
    }
    fn json(&self, column: &str) -> Result<Value, EventLogError> {
        Ok(self.try_get(column)?)
    }
    fn optional_text(&self, column: &str) -> Result<Option<String>, EventLogError> {
        Ok(self.try_get(column)?)
    }
}

/// Rows whose JSON columns are text: SQLite's, and the Any driver's with those columns
/// selected as text.
macro_rules! json_as_text_rows {
    ($($row:ty),*) => {$(
        impl RowAccess for $row {
            fn text(&self, column: &str) -> Result<String, EventLogError> {
                Ok(self.try_get(column)?)
            }
            fn int(&self, column: &str) -> Result<i64, EventLogError> {
                Ok(self.try_get(column)?)
            }
            fn json(&self, column: &str) -> Result<Value, EventLogError> {
                let text: String = self.try_get(column)?;
                Ok(serde_json::from_str(&text)?)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>, EventLogError> {
                Ok(self.try_get(column)?)
            }
        }
    )*};
}
json_as_text_rows!(sqlx::sqlite::SqliteRow, sqlx::any::AnyRow);

pub(crate) fn stored_event(row: &dyn RowAccess) -> Result<StoredEvent, EventLogError> {
    Ok(StoredEvent {
        aggregate_type: row.text("aggregate_type")?,
        aggregate_id: row.text("aggregate_id")?,
        sequence: row.int("sequence")?,
        event_type: row.text("event_type")?,
        event_version: row.text("event_version")?,
        payload: row.json("payload")?,
        metadata: row.json("metadata")?,
        global_position: row.int("global_position")?,
    })
}
