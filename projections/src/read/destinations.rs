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
        let sql = format!(
            "SELECT a.destination, d.zjbs AS holder_document, d.holder_rybs, d.holder_xm \
             FROM view_access_records a \
             LEFT JOIN view_documents d ON d.generation = $2 AND d.zjbs = a.zjbs \
             WHERE a.generation = $1 AND a.destination IS NOT NULL \
             AND a.kind IN ('lend', 'take_out', 'abnormal_withdrawal') \
             AND a.operated_ms >= $3 AND a.operated_ms <= $4{in_scope}"
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
            *by_destination.entry(destination.clone()).or_default() += 1;
            if let Some(holder) = row.try_get::<Option<String>, _>("holder_rybs")? {
                let trips = by_person
                    .entry(holder.clone())
                    .or_insert_with(|| PersonTrips {
                        holder,
                        name: None,
                        withdrawals: 0,
                        destinations: vec![],
                    });
                trips.withdrawals += 1;
                if trips.name.is_none() {
                    trips.name = row.try_get("holder_xm")?;
                    // The sealed name opens only at the row it was sealed in.
                    name_of.insert(trips.holder.clone(), row.try_get("holder_document")?);
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

    /// The SBXLH of every cabinet `scope` sees, in order.
    pub async fn cabinet_devices(&self, scope: &Scope) -> Result<Vec<String>, ProjectionError> {
        let cabinets = self.generation(Projection::Cabinets).await?;
        let (in_scope, units) = scope.filter("unit", 2);
        let sql = format!(
            "SELECT sbxlh FROM view_cabinets WHERE generation = $1{in_scope} ORDER BY sbxlh"
        );
        let mut query = sqlx::query(&sql).bind(cabinets);
        for unit in units {
            query = query.bind(unit);
        }
        let mut devices = Vec::new();
        for row in query.fetch_all(self.pool()).await? {
            devices.push(row.try_get("sbxlh")?);
        }
        Ok(devices)
    }
}
