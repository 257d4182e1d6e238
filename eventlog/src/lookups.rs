//! Look-ups by idempotency key. List feeds key each item `<kind>:<list serial>:<item>`, so every
//! event one list produced can be found again (e.g. the persons of a filing list and their
//! answers).

use crate::log::stored_event;
use crate::{Backend, EventLog, EventLogError, StoredEvent};

const COLUMNS: &str = "aggregate_type, aggregate_id, sequence, event_type, event_version, \
                       payload, metadata, global_position";

impl EventLog {
    /// Every event whose idempotency key starts with `prefix`, in log order.
    pub async fn events_with_key_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let mut events = match self.backend() {
            // LIKE is case-sensitive in PostgreSQL, so with its wildcards escaped it is an
            // exact prefix match.
            Backend::Postgres(_) => {
                self.select(
                    "(metadata ->> 'idempotency_key') LIKE $1 ESCAPE '\\'",
                    &[format!("{}%", escape_like(prefix))],
                )
                .await?
            }
            // SQLite's LIKE ignores case; a range in the binary collation is exact and can use
            // the idempotency index.
            Backend::Sqlite(_) => {
                self.select(
                    "json_extract(metadata, '$.idempotency_key') >= ? \
                     AND json_extract(metadata, '$.idempotency_key') < ?",
                    &[prefix.to_string(), format!("{prefix}\u{10FFFF}")],
                )
                .await?
            }
        };
        // Whatever a backend's collation does, only true prefixes are answered.
        events.retain(|event| {
            event.metadata["idempotency_key"]
                .as_str()
                .is_some_and(|key| key.starts_with(prefix))
        });
        Ok(events)
    }

    /// The event an idempotency key produced, whole, if any.
    pub async fn event_by_idempotency_key(
        &self,
        key: &str,
    ) -> Result<Option<StoredEvent>, EventLogError> {
        let condition = match self.backend() {
            Backend::Postgres(_) => "(metadata ->> 'idempotency_key') = $1",
            Backend::Sqlite(_) => "json_extract(metadata, '$.idempotency_key') = ?",
        };
        Ok(self
            .select(condition, &[key.to_string()])
            .await?
            .into_iter()
            .next())
    }

    /// The events matching `condition` (placeholders bound to `values` in order), in log order.
    pub(crate) async fn select(
        &self,
        condition: &str,
        values: &[String],
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        self.select_ordered(condition, values, "global_position")
            .await
    }

    /// As [`EventLog::select`], in the order of `order` (column names).
    pub(crate) async fn select_ordered(
        &self,
        condition: &str,
        values: &[String],
        order: &str,
    ) -> Result<Vec<StoredEvent>, EventLogError> {
        let sql = format!("SELECT {COLUMNS} FROM events WHERE {condition} ORDER BY {order}");
        match self.backend() {
            Backend::Postgres(pool) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = query.bind(value);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(|row| stored_event(row)).collect()
            }
            Backend::Sqlite(pool) => {
                let mut query = sqlx::query(&sql);
                for value in values {
                    query = query.bind(value);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter().map(|row| stored_event(row)).collect()
            }
        }
    }
}

/// `value` with LIKE's wildcards and its escape character escaped.
fn escape_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_like;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("bbxx:BB_1%:"), "bbxx:BB\\_1\\%:");
        assert_eq!(escape_like("a\\b"), "a\\\\b");
    }
}
