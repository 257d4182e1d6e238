//! Where documents were taken: the destinations of withdrawals (lend destinations), ranked, in
//! a period, and how often each holder travelled (the department page's destinations view).

use std::collections::BTreeMap;

use sqlx::Row as _;

use super::{Reader, Scope};
use crate::personal;
use crate::{Projection, ProjectionError};

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
    /// The withdrawals with a destination that `scope` sees, operated in
    /// `[from_ms, to_ms]` (epoch milliseconds).
    pub async fn destinations(
        &self,
        scope: &Scope,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Destinations, ProjectionError> {
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
        let mut by_destination: Vec<(String, i64)> = by_destination.into_iter().collect();
        by_destination.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
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
        let mut by_person: Vec<PersonTrips> = by_person.into_values().collect();
        by_person.sort_by(|a, b| {
            b.withdrawals
                .cmp(&a.withdrawals)
                .then_with(|| a.holder.cmp(&b.holder))
        });
        Ok(Destinations {
            by_destination,
            by_person,
        })
    }
}
