//! The statistics of SPEC §7: documents by state, withdrawals per day, destinations, overdue.
//!
//! [`Reader::stats`] adds up the `stats` projection's counters (migrations 0011 and 0012,
//! `crate::stats`): for an org subtree, its root's roll-up (a few grouped sums over one node's
//! rows), whatever the number of documents or units below it. [`Reader::stats_from_views`] is the scan of the views it replaced, kept as the
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
    /// the stats projection: the roll-ups of the scope's roots (every top of the org tree for
    /// everything), plus the own counters of units the roll-ups do not hold (`crate::stats`);
    /// for a scope of bare units, the own counters of each.
    pub async fn stats(&self, scope: &Scope, today: NaiveDate) -> Result<Stats, ProjectionError> {
        let generation = self.generation(Projection::Stats).await?;
        let mut stats = Stats::default();
        let roots: Option<Vec<String>> = match (&scope.units, &scope.roots) {
            (None, _) => Some(self.log.platform().org_roots().await?),
            (Some(_), Some(roots)) => Some(roots.iter().cloned().collect()),
            (Some(_), None) => None,
        };
        match roots {
            Some(roots) => {
                // Units counted before their org was in the tree are in no root's roll-up.
                let sql = "SELECT unit FROM view_stats_units WHERE generation = $1 AND placed = 0";
                let mut unplaced = Vec::new();
                for row in sqlx::query(sql)
                    .bind(generation)
                    .fetch_all(self.pool())
                    .await?
                {
                    let unit: String = row.try_get("unit")?;
                    if scope.sees(Some(&unit)) && !roots.contains(&unit) {
                        unplaced.push(unit);
                    }
                }
                self.add_counters(&mut stats, generation, &NODES, &roots, today)
                    .await?;
                self.add_counters(&mut stats, generation, &UNITS, &unplaced, today)
                    .await?;
            }
            None => {
                let units: Vec<String> = scope.units.iter().flatten().cloned().collect();
                self.add_counters(&mut stats, generation, &UNITS, &units, today)
                    .await?;
            }
        }
        for counts in [
            &mut stats.documents_by_state,
            &mut stats.withdrawals_per_day,
            &mut stats.destinations,
        ] {
            counts.retain(|_, n| *n != 0);
        }

        // Documents no cabinet held yet count for their holder's unit, which the counters above
        // hold (`crate::stats`); those whose holder has no unit only for everything, as the
        // scan's `COALESCE(d.unit, p.unit)` was NULL for them.
        if scope.units.is_none() {
            let sql = "SELECT state, NULLIF(planned_return, '') AS planned_return, n \
                       FROM view_stats_undeposited WHERE generation = $1 AND n <> 0";
            for row in sqlx::query(sql)
                .bind(generation)
                .fetch_all(self.pool())
                .await?
            {
                let n: i64 = row.try_get("n")?;
                count_document(&mut stats, &row, today, n)?;
            }
        }
        Ok(stats)
    }

    /// Adds the counters of `keys` (units or org nodes, as `tables` keeps them) to `stats`.
    async fn add_counters(
        &self,
        stats: &mut Stats,
        generation: i64,
        tables: &CounterTables,
        keys: &[String],
        today: NaiveDate,
    ) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        let keyed = |next: usize| {
            let placeholders: Vec<String> =
                (0..keys.len()).map(|i| format!("${}", next + i)).collect();
            format!("{} IN ({})", tables.key, placeholders.join(", "))
        };
        for (table, by, counts) in [
            (tables.states, "state", &mut stats.documents_by_state),
            (tables.withdrawals, "day", &mut stats.withdrawals_per_day),
            (tables.destinations, "destination", &mut stats.destinations),
        ] {
            let sql = format!(
                "SELECT {by} AS k, CAST(SUM(n) AS BIGINT) AS n FROM {table} \
                 WHERE generation = $1 AND {} GROUP BY {by}",
                keyed(2)
            );
            let query = bind_texts(sqlx::query(&sql).bind(generation), keys.iter().cloned());
            for row in query.fetch_all(self.pool()).await? {
                *counts.entry(row.try_get("k")?).or_default() += row.try_get::<i64, _>("n")?;
            }
        }

        // Due back and past the planned return date: overdue (is_overdue).
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) AS n FROM {} \
             WHERE generation = $1 AND planned_return < $2 AND {}",
            tables.due,
            keyed(3)
        );
        let query = sqlx::query(&sql).bind(generation).bind(today.to_string());
        stats.overdue += bind_texts(query, keys.iter().cloned())
            .fetch_one(self.pool())
            .await?
            .try_get::<i64, _>("n")?;
        Ok(())
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
            count_document(&mut stats, &row, today, 1)?;
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

/// The counter tables of one level: per unit (its own documents) or per org node (its subtree).
struct CounterTables {
    key: &'static str,
    states: &'static str,
    due: &'static str,
    withdrawals: &'static str,
    destinations: &'static str,
}

const UNITS: CounterTables = CounterTables {
    key: "unit",
    states: "view_stats_states",
    due: "view_stats_due",
    withdrawals: "view_stats_withdrawals",
    destinations: "view_stats_destinations",
};

const NODES: CounterTables = CounterTables {
    key: "node",
    states: "view_stats_node_states",
    due: "view_stats_node_due",
    withdrawals: "view_stats_node_withdrawals",
    destinations: "view_stats_node_destinations",
};

/// Counts `n` documents of a row's `state` and `planned_return` by state, and as overdue if
/// they are.
fn count_document(
    stats: &mut Stats,
    row: &sqlx::any::AnyRow,
    today: NaiveDate,
    n: i64,
) -> Result<(), ProjectionError> {
    let document_state: DocumentState = state(row, "state")?;
    let planned_return = row
        .try_get::<Option<String>, _>("planned_return")?
        .and_then(|d| d.parse::<NaiveDate>().ok());
    if is_overdue(document_state, planned_return, today) {
        stats.overdue += n;
    }
    *stats
        .documents_by_state
        .entry(document_state.name().to_string())
        .or_default() += n;
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
