//! Planner statistics for tables that grow fast from empty (issue 11).
//!
//! PostgreSQL plans by its statistics, which autovacuum refreshes at most once a minute and
//! only after a tenth of a table has changed. A new store fills its tables from nothing in that
//! first minute, and plans made while the statistics still said "empty" walk whole index
//! ranges: the projectors' position look-ups read every position of their projection and
//! filtered the ids, 6 to 28 ms a look-up growing with the log, in the first minute of a load
//! run. [`EventLog::refresh_statistics`], run by the maintenance worker every few seconds,
//! analyses a table of this database as soon as it has changed by as much again as it held when
//! last analysed (and by at least [`CHANGED_ROWS`] rows): a few times while a table grows from
//! nothing, then never, autovacuum's own rule being the smaller one for a large table. On the
//! embedded store it asks SQLite to do what it judges useful (`PRAGMA optimize`).

use sqlx::Row;

use crate::{Backend, EventLog, EventLogError};

/// Rows changed since the last analysis below which a table is left to autovacuum.
pub const CHANGED_ROWS: i64 = 1_000;

impl EventLog {
    /// Analyses the tables whose statistics fell far behind them (module docs); their names.
    pub async fn refresh_statistics(&self) -> Result<Vec<String>, EventLogError> {
        match self.backend() {
            Backend::Postgres(pool) => {
                let rows = sqlx::query(
                    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() \
                     AND n_mod_since_analyze >= GREATEST($1, n_live_tup - n_mod_since_analyze) \
                     ORDER BY relname",
                )
                .bind(CHANGED_ROWS)
                .fetch_all(pool)
                .await?;
                let mut analysed = Vec::with_capacity(rows.len());
                for row in rows {
                    let table: String = row.try_get("relname")?;
                    // A name from the catalogue, quoted as an identifier.
                    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
                    sqlx::query(&format!("ANALYZE {quoted}"))
                        .execute(pool)
                        .await?;
                    analysed.push(table);
                }
                Ok(analysed)
            }
            Backend::Sqlite(pool) => {
                sqlx::query("PRAGMA optimize").execute(pool).await?;
                Ok(Vec::new())
            }
        }
    }
}
