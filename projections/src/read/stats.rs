//! The statistics of SPEC §7: documents by state, withdrawals per day, destinations, overdue.
//!
//! [`Reader::stats`] adds up the `stats` projection's counters of the scope's units (migration
//! 0011, `crate::stats`): a few grouped sums over each unit's rows, whatever the number of
//! documents. [`Reader::stats_from_views`] is the scan of the views it replaced, kept as the
//! reference the projection is checked against (tests) and measured against (benchmarks).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate};
use custody_domain::document::DocumentState;
use custody_domain::reminder::{china_date, is_overdue};
use custody_domain::transitions::Named;
use sqlx::Row as _;

use super::documents::{joined, OWNER};
use super::{bind_texts, state, Reader, Scope};
use crate::stats::WITHDRAWALS;
use crate::{Projection, ProjectionError};

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
    /// The statistics of what `scope` sees, with overdue counted on `today` (China time), from
    /// the stats projection.
    pub async fn stats(&self, scope: &Scope, today: NaiveDate) -> Result<Stats, ProjectionError> {
        let generation = self.generation(Projection::Stats).await?;
        let mut stats = Stats::default();
        let (in_scope, units) = scope.filter("unit", 2);
        let grouped = |table: &str, by: &str| {
            format!(
                "SELECT {by} AS k, CAST(SUM(n) AS BIGINT) AS n FROM {table} \
                 WHERE generation = $1{in_scope} GROUP BY {by} HAVING SUM(n) <> 0"
            )
        };
        for (table, by, counts) in [
            ("view_stats_states", "state", &mut stats.documents_by_state),
            (
                "view_stats_withdrawals",
                "day",
                &mut stats.withdrawals_per_day,
            ),
            (
                "view_stats_destinations",
                "destination",
                &mut stats.destinations,
            ),
        ] {
            let sql = grouped(table, by);
            let query = bind_texts(sqlx::query(&sql).bind(generation), units.iter().cloned());
            for row in query.fetch_all(self.pool()).await? {
                counts.insert(row.try_get("k")?, row.try_get("n")?);
            }
        }

        // Due back and past the planned return date: overdue (is_overdue).
        let (in_scope, units) = scope.filter("unit", 3);
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM view_stats_due \
             WHERE generation = $1 AND planned_return < $2{in_scope}"
        );
        let query = sqlx::query(&sql).bind(generation).bind(today.to_string());
        stats.overdue = bind_texts(query, units)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;

        // Documents no cabinet held yet count for their holder's unit, as the persons view has
        // it (the module header of `crate::stats`).
        let persons = self.generation(Projection::Persons).await?;
        let (in_scope, units) = scope.filter("p.unit", 3);
        let sql = format!(
            "SELECT s.state, s.planned_return FROM view_stats_documents s \
             LEFT JOIN view_persons p ON p.generation = $2 AND p.rybs = s.holder_rybs \
             WHERE s.generation = $1 AND s.unit IS NULL{in_scope}"
        );
        let query = sqlx::query(&sql).bind(generation).bind(persons);
        for row in bind_texts(query, units).fetch_all(self.pool()).await? {
            count_document(&mut stats, &row, today)?;
        }
        Ok(stats)
    }

    /// The same statistics by scanning the documents, persons and access-records views: what
    /// [`Reader::stats`] answered before the stats projection, the reference it must equal.
    pub async fn stats_from_views(
        &self,
        scope: &Scope,
        today: NaiveDate,
    ) -> Result<Stats, ProjectionError> {
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
            count_document(&mut stats, &row, today)?;
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

/// Counts one document row (`state`, `planned_return`) by state, and as overdue if it is.
fn count_document(
    stats: &mut Stats,
    row: &sqlx::any::AnyRow,
    today: NaiveDate,
) -> Result<(), ProjectionError> {
    let document_state: DocumentState = state(row, "state")?;
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
    Ok(())
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
