//! Where documents were taken: the destinations of withdrawals (lend destinations), ranked, in
//! a period, and how often each holder travelled (the department page's destinations view).
//!
//! [`Reader::destinations`] sums the `stats` projection's trips (withdrawals per unit, day,
//! destination and holder, [`crate::stats::TRIPS`]) and opens the names of the holders asked
//! for; [`Reader::destinations_from_views`] is the count over the access records joined with
//! their documents that it replaced, kept as the reference the tests compare it with.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use custody_domain::values::china_standard_time;
use sqlx::Row as _;

use super::{Reader, Scope};
use crate::personal;
use crate::stats::TRIPS;
use crate::{Projection, ProjectionError};

/// How many holders one `IN (…)` look-up names.
const HOLDERS_PER_LOOKUP: usize = 500;

/// A period of the stats projection's generation, as the trips' day column has it.
struct Days {
    generation: i64,
    from: String,
    to: String,
}

/// Destinations and holders in a period, most frequent first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    /// (destination, withdrawals), most first, then by name.
    pub by_destination: Vec<(String, i64)>,
    /// Per holder, most first.
    pub by_person: Vec<PersonTrips>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonTrips {
    /// RYBS.
    pub holder: String,
    pub name: Option<String>,
    pub withdrawals: i64,
    /// The destinations named, in name order.
    pub destinations: Vec<String>,
}

impl Reader {
    /// The withdrawals with a destination that `scope` sees, made on the China-time days
    /// `from..=to` (None: unbounded), counted from the `stats` projection's trips. With
    /// `persons`, only the that many most frequent holders (the ranking is the store's, over
    /// every holder); without, all of them. Every holder returned is named.
    pub async fn destinations(
        &self,
        scope: &Scope,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
        persons: Option<usize>,
    ) -> Result<Destinations, ProjectionError> {
        // Days are YYYY-MM-DD text: these bounds sort before and after every one.
        let days = Days {
            generation: self.generation(Projection::Stats).await?,
            from: from.map_or_else(|| "0000-00-00".to_string(), |d| d.to_string()),
            to: to.map_or_else(|| "9999-99-99".to_string(), |d| d.to_string()),
        };
        let mut by_destination: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_person: BTreeMap<String, PersonTrips> = BTreeMap::new();
        let mut add = |destination: String, holder: String, n: i64| {
            if holder.is_empty() {
                return;
            }
            let trips = by_person
                .entry(holder.clone())
                .or_insert_with(|| PersonTrips {
                    holder,
                    name: None,
                    withdrawals: 0,
                    destinations: vec![],
                });
            trips.withdrawals += n;
            if !trips.destinations.contains(&destination) {
                trips.destinations.push(destination);
                trips.destinations.sort();
            }
        };
        match persons {
            None => {
                let rows = self
                    .trips(&days, scope, "destination, holder_rybs", &[], "")
                    .await?;
                for row in rows {
                    let destination: String = row.try_get("destination")?;
                    let n: i64 = row.try_get("n")?;
                    *by_destination.entry(destination.clone()).or_default() += n;
                    add(destination, row.try_get("holder_rybs")?, n);
                }
            }
            Some(limit) => {
                // The store ranks the holders and returns the first `limit`; then their
                // destinations: a few hundred rows rather than one per destination and holder.
                for row in self.trips(&days, scope, "destination", &[], "").await? {
                    by_destination.insert(row.try_get("destination")?, row.try_get("n")?);
                }
                let tail = format!(" ORDER BY 2 DESC, 1 LIMIT {limit}");
                let first = self.trips(&days, scope, "holder_rybs", &[], &tail).await?;
                let mut holders = Vec::with_capacity(first.len());
                for row in first {
                    let holder: String = row.try_get("holder_rybs")?;
                    if !holder.is_empty() {
                        holders.push(holder);
                    }
                }
                for chunk in holders.chunks(HOLDERS_PER_LOOKUP) {
                    let rows = self
                        .trips(&days, scope, "destination, holder_rybs", chunk, "")
                        .await?;
                    for row in rows {
                        add(
                            row.try_get("destination")?,
                            row.try_get("holder_rybs")?,
                            row.try_get("n")?,
                        );
                    }
                }
            }
        }
        let mut destinations = Destinations {
            by_destination: ranked(by_destination),
            by_person: by_frequency(by_person),
        };
        self.name_holders(&mut destinations.by_person).await?;
        Ok(destinations)
    }

    /// The trips `scope` sees on `days`, summed per `columns` (as `n`); only those of
    /// `holders` if any are named, only those with a holder if `tail` is given (a ranking).
    async fn trips(
        &self,
        days: &Days,
        scope: &Scope,
        columns: &str,
        holders: &[String],
        tail: &str,
    ) -> Result<Vec<sqlx::any::AnyRow>, ProjectionError> {
        let (in_scope, units) = scope.filter("unit", 4);
        let next = 4 + units.len();
        let of_holders = if !holders.is_empty() {
            let placeholders: Vec<String> = (0..holders.len())
                .map(|i| format!("${}", next + i))
                .collect();
            format!(" AND holder_rybs IN ({})", placeholders.join(", "))
        } else if !tail.is_empty() {
            " AND holder_rybs <> ''".to_string()
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {columns}, CAST(SUM(n) AS BIGINT) AS n FROM {} \
             WHERE generation = $1 AND day >= $2 AND day <= $3{in_scope}{of_holders} \
             GROUP BY {columns}{tail}",
            TRIPS.name
        );
        let mut query = sqlx::query(&sql)
            .bind(days.generation)
            .bind(days.from.as_str())
            .bind(days.to.as_str());
        for unit in units {
            query = query.bind(unit);
        }
        for holder in holders {
            query = query.bind(holder.as_str());
        }
        Ok(query.fetch_all(self.pool()).await?)
    }

    /// Fills in each holder's name: that of their document with the greatest ZJBS, opened with
    /// that document's row (a sealed cell opens only where it was sealed).
    async fn name_holders(&self, holders: &mut [PersonTrips]) -> Result<(), ProjectionError> {
        let documents = self.generation(Projection::Documents).await?;
        let mut named: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        for chunk in holders.chunks(HOLDERS_PER_LOOKUP) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT zjbs, holder_rybs, holder_xm FROM view_documents \
                 WHERE generation = $1 AND holder_rybs IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(documents);
            for trips in chunk {
                query = query.bind(trips.holder.as_str());
            }
            for row in query.fetch_all(self.pool()).await? {
                let holder: String = row.try_get("holder_rybs")?;
                let document: String = row.try_get("zjbs")?;
                let name: Option<String> = row.try_get("holder_xm")?;
                let greater = named.get(&holder).is_none_or(|(d, _)| *d < document);
                if greater {
                    named.insert(holder, (document, name));
                }
            }
        }
        let ring = personal::ring_for_cells(
            &self.log,
            named.iter().map(|(holder, (_, name))| {
                (Some(holder.clone()), personal::is_sealed(name.as_deref()))
            }),
        )
        .await?;
        for trips in holders.iter_mut() {
            let Some((document, name)) = named.remove(&trips.holder) else {
                continue;
            };
            trips.name = name;
            personal::open_cell(
                ring.as_ref(),
                personal::DOCUMENTS.table,
                &document,
                "holder_xm",
                Some(&trips.holder.clone()),
                &mut trips.name,
            )?;
        }
        Ok(())
    }

    /// As [`Reader::destinations`] with every holder named, counted from the access records
    /// operated in `[from_ms, to_ms]` (epoch milliseconds) and their documents: the reference.
    pub async fn destinations_from_views(
        &self,
        scope: &Scope,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Destinations, ProjectionError> {
        let start = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .and_then(|t| t.and_local_timezone(china_standard_time()).single())
                .map(|t| t.timestamp_millis())
        };
        let from_ms = from.and_then(start).unwrap_or(i64::MIN);
        let to_ms = to
            .and_then(|d| d.succ_opt())
            .and_then(start)
            .map_or(i64::MAX, |t| t - 1);
        let access_records = self.generation(Projection::AccessRecords).await?;
        let documents = self.generation(Projection::Documents).await?;
        let (in_scope, units) = scope.filter("a.unit", 5);
        // Counted by the store per destination and holder, from indexes that hold what the
        // statement reads (migration 0012): a few thousand rows rather than every withdrawal.
        let sql = format!(
            "SELECT a.destination, d.holder_rybs, MAX(d.zjbs || ' ' || d.holder_xm) AS named, \
             COUNT(*) AS n FROM view_access_records a \
             LEFT JOIN view_documents d ON d.generation = $2 AND d.zjbs = a.zjbs \
             WHERE a.generation = $1 AND a.destination IS NOT NULL \
             AND a.kind IN ('lend', 'take_out', 'abnormal_withdrawal') \
             AND a.operated_ms >= $3 AND a.operated_ms <= $4{in_scope} \
             GROUP BY a.destination, d.holder_rybs"
        );
        let mut query = sqlx::query(&sql)
            .bind(access_records)
            .bind(documents)
            .bind(from_ms)
            .bind(to_ms);
        for unit in units {
            query = query.bind(unit);
        }
        let mut by_destination: BTreeMap<String, i64> = BTreeMap::new();
        let mut by_person: BTreeMap<String, PersonTrips> = BTreeMap::new();
        let mut name_of: BTreeMap<String, Option<String>> = BTreeMap::new();
        for row in query.fetch_all(self.pool()).await? {
            let destination: String = row.try_get("destination")?;
            let n: i64 = row.try_get("n")?;
            *by_destination.entry(destination.clone()).or_default() += n;
            if let Some(holder) = row.try_get::<Option<String>, _>("holder_rybs")? {
                let trips = by_person
                    .entry(holder.clone())
                    .or_insert_with(|| PersonTrips {
                        holder,
                        name: None,
                        withdrawals: 0,
                        destinations: vec![],
                    });
                trips.withdrawals += n;
                if trips.name.is_none() {
                    // A sealed name opens only with the id of the row it was sealed in: the two
                    // come from one row (the holder's document with the greatest ZJBS), joined.
                    let named: Option<String> = row.try_get("named")?;
                    if let Some((document, name)) = named.as_deref().and_then(|n| n.split_once(' '))
                    {
                        trips.name = Some(name.to_string());
                        name_of.insert(trips.holder.clone(), Some(document.to_string()));
                    }
                }
                if !trips.destinations.contains(&destination) {
                    trips.destinations.push(destination);
                    trips.destinations.sort();
                }
            }
        }
        let ring = personal::ring_for_cells(
            &self.log,
            by_person.values().map(|t| {
                (
                    Some(t.holder.clone()),
                    personal::is_sealed(t.name.as_deref()),
                )
            }),
        )
        .await?;
        for trips in by_person.values_mut() {
            let document = name_of
                .get(&trips.holder)
                .cloned()
                .flatten()
                .unwrap_or_default();
            personal::open_cell(
                ring.as_ref(),
                personal::DOCUMENTS.table,
                &document,
                "holder_xm",
                Some(&trips.holder.clone()),
                &mut trips.name,
            )?;
        }
        Ok(Destinations {
            by_destination: ranked(by_destination),
            by_person: by_frequency(by_person),
        })
    }
}

/// Most withdrawals first, then by name.
fn ranked(by_destination: BTreeMap<String, i64>) -> Vec<(String, i64)> {
    let mut ranked: Vec<(String, i64)> = by_destination.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked
}

/// Most withdrawals first, then by RYBS.
fn by_frequency(by_person: BTreeMap<String, PersonTrips>) -> Vec<PersonTrips> {
    let mut persons: Vec<PersonTrips> = by_person.into_values().collect();
    persons.sort_by(|a, b| {
        b.withdrawals
            .cmp(&a.withdrawals)
            .then_with(|| a.holder.cmp(&b.holder))
    });
    persons
}
