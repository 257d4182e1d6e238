//! The statistics of SPEC §7: documents by state, withdrawals per day, destinations, overdue.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use custody_domain::document::DocumentState;
use custody_domain::reminder::{china_date, is_overdue};
use custody_domain::transitions::Named;
use sqlx::Row as _;

use super::documents::{joined, OWNER};
use super::{bind_texts, state, Reader, Scope};
use crate::{Projection, ProjectionError};

/// The kinds of access record that take a document out.
const WITHDRAWALS: [&str; 3] = ["lend", "take_out", "abnormal_withdrawal"];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// By state name.
    pub documents_by_state: BTreeMap<String, i64>,
    /// By China-time date (ISO).
    pub withdrawals_per_day: BTreeMap<String, i64>,
    pub destinations: BTreeMap<String, i64>,
    /// Documents overdue on `today` (`custody_domain::reminder::is_overdue`).
    pub overdue: i64,
}

impl Reader {
    /// The statistics of what `scope` sees, with overdue counted on `today` (China time).
    pub async fn stats(&self, scope: &Scope, today: NaiveDate) -> Result<Stats, ProjectionError> {
        let mut stats = Stats::default();
        let (documents, persons) = self.document_generations().await?;
        let (in_scope, units) = scope.filter(OWNER, 1);
        let sql = format!(
            "SELECT d.state, d.planned_return {} {in_scope}",
            joined(documents, persons)
        );
        for row in bind_texts(sqlx::query(&sql), units)
            .fetch_all(self.pool())
            .await?
        {
            let document_state: DocumentState = state(&row, "state")?;
            let planned_return = row
                .try_get::<Option<String>, _>("planned_return")?
                .and_then(|d| d.parse::<NaiveDate>().ok());
            if is_overdue(document_state, planned_return, today) {
                stats.overdue += 1;
            }
            *stats
                .documents_by_state
                .entry(document_state.name().to_string())
                .or_default() += 1;
        }

        let access_records = self.generation(Projection::AccessRecords).await?;
        let (in_scope, units) = scope.filter("unit", 2);
        let sql = format!(
            "SELECT kind, operated_at, destination FROM view_access_records \
             WHERE generation = $1{in_scope}"
        );
        let mut query = sqlx::query(&sql).bind(access_records);
        for unit in units {
            query = query.bind(unit);
        }
        for row in query.fetch_all(self.pool()).await? {
            let kind: String = row.try_get("kind")?;
            if !WITHDRAWALS.contains(&kind.as_str()) {
                continue;
            }
            let operated_at: String = row.try_get("operated_at")?;
            *stats
                .withdrawals_per_day
                .entry(day_of(&operated_at))
                .or_default() += 1;
            if let Some(destination) = row.try_get::<Option<String>, _>("destination")? {
                *stats.destinations.entry(destination).or_default() += 1;
            }
        }
        Ok(stats)
    }
}

/// The China-time date of an operation time (its first 10 characters if it is no RFC 3339).
fn day_of(operated_at: &str) -> String {
    match DateTime::parse_from_rfc3339(operated_at) {
        Ok(at) => china_date(at).to_string(),
        Err(_) => operated_at.chars().take(10).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::day_of;

    #[test]
    fn withdrawals_are_counted_on_their_china_time_date() {
        assert_eq!(day_of("2026-11-23T23:59:59+08:00"), "2026-11-23");
        assert_eq!(day_of("2026-11-23T16:00:00Z"), "2026-11-24");
        assert_eq!(day_of("2026-11-23 garbled"), "2026-11-23");
    }
}
