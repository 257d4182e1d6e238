//! Reads across many aggregates at once, for the nightly reconciliation's diff (SPEC §6;
//! docs/reconciliation.md): what one sender reported since a moment, the histories of a set of
//! documents, and which business serials of a set the log holds.
//!
//! The metadata expressions are the same text as the indexes (`events_sender`,
//! `events_idempotency_key`), so that the indexes serve these reads.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset};

use crate::{Backend, EventLog, EventLogError, StoredEvent};

/// Values bound in one `IN (…)` list: well under both backends' parameter limits.
const IDS_PER_QUERY: usize = 500;

impl EventLog {
    /// The events of `aggregate_type` that `sender` (metadata `ei`) sent and the platform
    /// recorded at or after `since`, in log order.
    pub async fn events_sent_since(
        &self,
        sender: &str,
        aggregate_type: &str,
        since: DateTime<FixedOffset>,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let condition = match self.backend() {
            // Byte order, whatever the database's collation: RFC 3339 texts of one offset then
            // compare as times.
            Backend::Postgres(_) => {
                "(metadata ->> 'ei') = $1 AND aggregate_type = $2 \
                 AND (metadata ->> 'recorded_at') COLLATE \"C\" >= $3"
            }
            Backend::Sqlite(_) => {
                "json_extract(metadata, '$.ei') = ? AND aggregate_type = ? \
                 AND json_extract(metadata, '$.recorded_at') >= ?"
            }
        };
        self.select(
            condition,
            &[
                sender.to_string(),
                aggregate_type.to_string(),
                since.to_rfc3339(),
            ],
        )
        .await
    }

    /// Every event of the aggregates `ids` of `aggregate_type`, by aggregate id, each
    /// aggregate's in sequence order.
    pub async fn events_of_many(
        &self,
        aggregate_type: &str,
        ids: &[&str],
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let mut events = Vec::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let condition = format!(
                "aggregate_type = {} AND aggregate_id IN ({})",
                self.placeholders(1, 1),
                self.placeholders(2, chunk.len())
            );
            let mut values = Vec::with_capacity(chunk.len() + 1);
            values.push(aggregate_type.to_string());
            values.extend(chunk.iter().map(|id| id.to_string()));
            events.extend(
                self.select_ordered(&condition, &values, "aggregate_id, sequence")
                    .await?,
            );
        }
        Ok(events)
    }

    /// Which of `keys` an event carries as its idempotency key.
    pub async fn idempotency_keys_among(
        &self,
        keys: &[&str],
    ) -> Result<HashSet<String>, EventLogError> {
        let key = match self.backend() {
            Backend::Postgres(_) => "(metadata ->> 'idempotency_key')",
            Backend::Sqlite(_) => "json_extract(metadata, '$.idempotency_key')",
        };
        let mut held = HashSet::new();
        for chunk in keys.chunks(IDS_PER_QUERY) {
            let sql = format!(
                "SELECT {key} AS k FROM events WHERE {key} IN ({})",
                self.placeholders(1, chunk.len())
            );
            let found: Vec<String> = match self.backend() {
                Backend::Postgres(pool) => {
                    let mut query = sqlx::query_scalar(&sql);
                    for k in chunk {
                        query = query.bind(*k);
                    }
                    query.fetch_all(pool).await?
                }
                Backend::Sqlite(pool) => {
                    let mut query = sqlx::query_scalar(&sql);
                    for k in chunk {
                        query = query.bind(*k);
                    }
                    query.fetch_all(pool).await?
                }
            };
            held.extend(found);
        }
        Ok(held)
    }

    /// Parameters `first..first + count` in this backend's style, comma-separated.
    fn placeholders(&self, first: usize, count: usize) -> String {
        (first..first + count)
            .map(|n| match self.backend() {
                Backend::Postgres(_) => format!("${n}"),
                Backend::Sqlite(_) => "?".to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
