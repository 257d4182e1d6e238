//! A rebuild's read of the log in commit order.
//!
//! The contract of [`EventLog::read_committed`] (events strictly after a cursor, in commit
//! order; on PostgreSQL in `(tx_id, global_position)` order and only from transactions below
//! the snapshot's xmin; on SQLite by position), with two differences:
//!
//! - Payload and metadata come as text: the payload is decoded once, straight into the domain
//!   event, and of the metadata only what the views read is kept. Decoding through a
//!   `serde_json::Value` first cost about as much again.
//! - On PostgreSQL the `ORDER BY` names the table's columns. `read_committed` selects
//!   `tx_id::text AS tx_id` and orders by `tx_id`, which PostgreSQL takes to be the output
//!   column, the text: `"1000"` sorts before `"999"` (a reader paging across a change in the
//!   number of digits of the transaction id skips events), and no index serves the order, so
//!   every page sorts all the rest of the log (O(n²) for a whole read).

use custody_eventlog::personal::Sealed;
use custody_eventlog::{Backend, EventLog};
use serde::Deserialize;
use serde_json::Value;
use sqlx::Row;

use crate::feed::Cursor;
use crate::views::{EventRef, Payload};
use crate::ProjectionError;

/// A stored event as a rebuild reads it.
#[derive(Debug, Clone)]
pub(crate) struct ScannedEvent {
    pub commit: Cursor,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    /// The payload's JSON text.
    pub payload: String,
    pub metadata: Metadata,
}

/// What the views read of an event's metadata.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Metadata {
    #[serde(default)]
    pub recorded_at: Option<String>,
    #[serde(default)]
    pub ywlsh: Option<String>,
}

impl ScannedEvent {
    pub(crate) fn as_event(&self) -> EventRef<'_> {
        EventRef {
            aggregate_type: &self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            sequence: self.sequence,
            event_type: &self.event_type,
            payload: Payload::Text(&self.payload),
            recorded_at: self.metadata.recorded_at.as_deref(),
            ywlsh: self.metadata.ywlsh.as_deref(),
        }
    }
}

fn metadata(text: &str) -> Result<Metadata, ProjectionError> {
    serde_json::from_str(text).map_err(|e| ProjectionError::Decode(format!("metadata: {e}")))
}

/// Up to `limit` committed events strictly after `after`, in commit order, their personal
/// fields opened.
pub(crate) async fn read_committed(
    log: &EventLog,
    after: Cursor,
    limit: usize,
) -> Result<Vec<ScannedEvent>, ProjectionError> {
    let mut events = read_stored(log, after, limit).await?;
    open_personal_data(log, &mut events).await?;
    Ok(events)
}

/// Only the events with a sealed field are parsed: the others keep the fast text path.
async fn open_personal_data(
    log: &EventLog,
    events: &mut [ScannedEvent],
) -> Result<(), ProjectionError> {
    let mut sealed: Vec<(usize, Value)> = Vec::new();
    for (i, event) in events.iter().enumerate() {
        if event.payload.contains("\"sealed_for\"") {
            let value: Value = serde_json::from_str(&event.payload)
                .map_err(|e| ProjectionError::Decode(format!("payload: {e}")))?;
            sealed.push((i, value));
        }
    }
    if sealed.is_empty() {
        return Ok(());
    }
    let Some(personal) = log.personal_data() else {
        return Err(custody_eventlog::EventLogError::NoMasterKey.into());
    };
    let mut items: Vec<Sealed<'_>> = sealed
        .iter_mut()
        .map(|(i, payload)| {
            let event = &events[*i];
            Sealed {
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                event_type: &event.event_type,
                payload,
            }
        })
        .collect();
    personal.open(&mut items).await?;
    drop(items);
    for (i, payload) in sealed {
        events[i].payload = payload.to_string();
    }
    Ok(())
}

async fn read_stored(
    log: &EventLog,
    after: Cursor,
    limit: usize,
) -> Result<Vec<ScannedEvent>, ProjectionError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    match log.backend() {
        Backend::Postgres(pool) => {
            // xid8 has no binary mapping in sqlx: it travels as text.
            let rows = sqlx::query(
                "SELECT tx_id::text AS commit_tx, global_position, aggregate_type, aggregate_id, \
                 sequence, event_type, payload::text AS payload, metadata::text AS metadata \
                 FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2) \
                 AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY events.tx_id, events.global_position LIMIT $3",
            )
            .bind(after.tx_id.to_string())
            .bind(after.position)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let tx: String = row.try_get("commit_tx")?;
                    let tx_id = tx
                        .parse()
                        .map_err(|_| ProjectionError::Decode(format!("xid8 {tx:?}")))?;
                    Ok(ScannedEvent {
                        commit: Cursor {
                            tx_id,
                            position: row.try_get("global_position")?,
                        },
                        aggregate_type: row.try_get("aggregate_type")?,
                        aggregate_id: row.try_get("aggregate_id")?,
                        sequence: row.try_get("sequence")?,
                        event_type: row.try_get("event_type")?,
                        payload: row.try_get("payload")?,
                        metadata: metadata(row.try_get("metadata")?)?,
                    })
                })
                .collect()
        }
        Backend::Sqlite(pool) => {
            // One writer at a time: the position is the commit order (`tx_id == position`).
            let rows = sqlx::query(
                "SELECT global_position, aggregate_type, aggregate_id, sequence, event_type, \
                 payload, metadata FROM events WHERE global_position > ? \
                 ORDER BY global_position LIMIT ?",
            )
            .bind(after.position)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let position: i64 = row.try_get("global_position")?;
                    Ok(ScannedEvent {
                        commit: Cursor {
                            tx_id: u64::try_from(position).unwrap_or(0),
                            position,
                        },
                        aggregate_type: row.try_get("aggregate_type")?,
                        aggregate_id: row.try_get("aggregate_id")?,
                        sequence: row.try_get("sequence")?,
                        event_type: row.try_get("event_type")?,
                        payload: row.try_get("payload")?,
                        metadata: metadata(row.try_get("metadata")?)?,
                    })
                })
                .collect()
        }
    }
}
