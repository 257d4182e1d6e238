//! The global log in commit order, for the feed and the relay.
//!
//! PostgreSQL takes an identity value when a row is inserted, not when its transaction commits,
//! so `global_position > cursor` can skip an event whose transaction commits after a later one.
//! Events are therefore read in `(tx_id, global_position)` order and only from transactions
//! below the snapshot's xmin: every transaction older than xmin has ended, so that part of the
//! log is final and no event can appear in it later. SQLite has one writer at a time, so its
//! position already is the commit order and serves as both halves of the key.

use serde_json::Value;
use sqlx::Row;

use crate::{Backend, EventLog, EventLogError, StoredEvent};

/// A place in the global commit order: `(tx_id, position)` on PostgreSQL; on SQLite
/// `tx_id == position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct CommitPosition {
    pub tx_id: u64,
    pub position: i64,
}

impl CommitPosition {
    /// Before the first event.
    pub const START: CommitPosition = CommitPosition {
        tx_id: 0,
        position: 0,
    };
}

/// A committed event and its place in the commit order.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent {
    pub commit: CommitPosition,
    pub event: StoredEvent,
}

const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
                       payload, metadata, global_position";

// The ORDER BY clauses name `events.tx_id`: a bare `tx_id` would be the `tx_id::text` output
// column, and text order puts transaction 1000 before 999.

/// Rows of transactions that have all ended. The statement's own snapshot is used, so the set
/// it reads and the xmin it compares with belong together.
const PG_FINAL: &str = "tx_id < pg_snapshot_xmin(pg_current_snapshot())";

impl EventLog {
    /// Up to `limit` committed events strictly after `after`, in commit order. Never returns an event while an older transaction that could still
    /// append before it is running, so a reader that advances its cursor over the result never
    /// skips one.
    pub async fn read_committed(
        &self,
        after: CommitPosition,
        limit: usize,
    ) -> Result<Vec<CommittedEvent>, EventLogError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match self.backend() {
            Backend::Postgres(pool) => {
                // xid8 has no binary mapping in sqlx: it travels as text.
                let sql = format!(
                    "SELECT tx_id::text AS tx_id, {COLUMNS} FROM events \
                     WHERE (tx_id, global_position) > ($1::text::xid8, $2) AND {PG_FINAL} \
                     ORDER BY events.tx_id, events.global_position LIMIT $3"
                );
                let rows = sqlx::query(&sql)
                    .bind(after.tx_id.to_string())
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let event = pg_event(row)?;
                        Ok(CommittedEvent {
                            commit: CommitPosition {
                                tx_id: parse_xid(row.try_get("tx_id")?)?,
                                position: event.global_position,
                            },
                            event,
                        })
                    })
                    .collect()
            }
            Backend::Sqlite(pool) => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM events WHERE global_position > ? \
                     ORDER BY global_position LIMIT ?"
                );
                let rows = sqlx::query(&sql)
                    .bind(after.position)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        let event = sqlite_event(row)?;
                        Ok(CommittedEvent {
                            commit: sqlite_position(event.global_position),
                            event,
                        })
                    })
                    .collect()
            }
        }
    }

    /// The last event a commit-order reader can see now, if any: the head a feed's lag is
    /// measured against.
    pub async fn committed_head(&self) -> Result<Option<CommitPosition>, EventLogError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                let sql = format!(
                    "SELECT tx_id::text AS tx_id, global_position FROM events WHERE {PG_FINAL} \
                     ORDER BY events.tx_id DESC, events.global_position DESC LIMIT 1"
                );
                let row = sqlx::query(&sql).fetch_optional(pool).await?;
                row.map(|row| {
                    Ok(CommitPosition {
                        tx_id: parse_xid(row.try_get("tx_id")?)?,
                        position: row.try_get("global_position")?,
                    })
                })
                .transpose()
            }
            Backend::Sqlite(pool) => {
                let max: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(global_position) FROM events")
                        .fetch_one(pool)
                        .await?;
                Ok(max.map(sqlite_position))
            }
        }
    }

    /// How many committed events lie after `after`: a reader's lag.
    pub async fn count_committed_after(&self, after: CommitPosition) -> Result<i64, EventLogError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                let sql = format!(
                    "SELECT COUNT(*) FROM events \
                     WHERE (tx_id, global_position) > ($1::text::xid8, $2) AND {PG_FINAL}"
                );
                Ok(sqlx::query_scalar(&sql)
                    .bind(after.tx_id.to_string())
                    .bind(after.position)
                    .fetch_one(pool)
                    .await?)
            }
            Backend::Sqlite(pool) => Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM events WHERE global_position > ?",
            )
            .bind(after.position)
            .fetch_one(pool)
            .await?),
        }
    }
}

fn sqlite_position(position: i64) -> CommitPosition {
    CommitPosition {
        // AUTOINCREMENT positions start at 1; a negative one cannot occur.
        tx_id: u64::try_from(position).unwrap_or(0),
        position,
    }
}

fn parse_xid(text: String) -> Result<u64, EventLogError> {
    text.parse()
        .map_err(|_| EventLogError::Database(sqlx::Error::Decode(format!("xid8 {text:?}").into())))
}

fn pg_event(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, EventLogError> {
    Ok(StoredEvent {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: row.try_get("payload")?,
        metadata: row.try_get("metadata")?,
        global_position: row.try_get("global_position")?,
    })
}

fn sqlite_event(row: &sqlx::sqlite::SqliteRow) -> Result<StoredEvent, EventLogError> {
    // JSON columns are text in SQLite.
    let json = |column: &str| -> Result<Value, EventLogError> {
        let text: String = row.try_get(column)?;
        Ok(serde_json::from_str(&text)?)
    };
    Ok(StoredEvent {
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        payload: json("payload")?,
        metadata: json("metadata")?,
        global_position: row.try_get("global_position")?,
    })
}
