//! `view_cabinets`, with drawer occupancy from `view_documents` and the device's latest
//! heartbeat from the platform's `device_status`.

use std::collections::HashMap;

use custody_domain::cabinet::{Cabinet, CabinetState};
use custody_domain::transitions::Named as _;
use sqlx::Row as _;

use super::{state, Reader, Scope};
use crate::{Projection, ProjectionError};

/// A cabinet (SBXLH) with what each drawer holds.
#[derive(Debug, Clone, PartialEq)]
pub struct CabinetRecord {
    /// SBXLH.
    pub device: String,
    pub unit: Option<String>,
    pub state: CabinetState,
    /// Its bodies (ZJGXLH) in enrolment order.
    pub bodies: Vec<BodyOccupancy>,
    pub last_heartbeat: Option<Heartbeat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOccupancy {
    /// ZJGXLH.
    pub serial: String,
    pub rows: u16,
    pub columns: u16,
    /// Every drawer, row by row, each column in order.
    pub drawers: Vec<DrawerOccupancy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawerOccupancy {
    pub row: i64,
    pub column: i64,
    /// The ZJBS of the documents in it, in order.
    pub documents: Vec<String>,
}

/// A cabinet's drawers and documents, counted (the department page's list of cabinets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CabinetSummary {
    /// SBXLH.
    pub device: String,
    pub unit: Option<String>,
    pub state: CabinetState,
    /// Drawers of all its bodies.
    pub drawers: usize,
    /// Drawers holding at least one document.
    pub occupied: usize,
    /// Documents in its drawers.
    pub documents: usize,
    /// When its latest heartbeat arrived (epoch ms).
    pub last_heartbeat_ms: Option<i64>,
}

/// A cabinet's bodies' rows and columns, by ZJGXLH.
type BodySizes = HashMap<String, (i64, i64)>;

/// How many cabinets one occupancy statement names.
const DEVICES_PER_LOOKUP: usize = 500;

/// The latest heartbeat (heartbeats are device status, not events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub received_ms: i64,
    /// What the device said, as JSON text.
    pub status: String,
}

/// How long ago a cabinet's latest heartbeat arrived, in the buckets the metrics show (a
/// cabinet beats every 10 minutes, SPEC §2.4.7: one missed beat is still under 15 minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HeartbeatAge {
    Under15Minutes,
    Under1Hour,
    Under1Day,
    Older,
    /// No heartbeat ever arrived.
    Never,
}

impl HeartbeatAge {
    pub const ALL: [HeartbeatAge; 5] = [
        HeartbeatAge::Under15Minutes,
        HeartbeatAge::Under1Hour,
        HeartbeatAge::Under1Day,
        HeartbeatAge::Older,
        HeartbeatAge::Never,
    ];

    /// The bucket of a heartbeat received at `received_ms`, at `now_ms`.
    pub fn of(received_ms: Option<i64>, now_ms: i64) -> HeartbeatAge {
        const MINUTE: i64 = 60_000;
        match received_ms.map(|received| now_ms.saturating_sub(received)) {
            None => HeartbeatAge::Never,
            Some(age) if age < 15 * MINUTE => HeartbeatAge::Under15Minutes,
            Some(age) if age < 60 * MINUTE => HeartbeatAge::Under1Hour,
            Some(age) if age < 24 * 60 * MINUTE => HeartbeatAge::Under1Day,
            Some(_) => HeartbeatAge::Older,
        }
    }

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            HeartbeatAge::Under15Minutes => "under_15m",
            HeartbeatAge::Under1Hour => "15m_to_1h",
            HeartbeatAge::Under1Day => "1h_to_24h",
            HeartbeatAge::Older => "over_24h",
            HeartbeatAge::Never => "never",
        }
    }
}

impl Reader {
    /// How many cabinets of each state have their latest heartbeat in each age bucket at
    /// `now_ms`; every state a cabinet can be in and every bucket is present, at 0 when none.
    pub async fn cabinets_by_heartbeat_age(
        &self,
        now_ms: i64,
    ) -> Result<HashMap<(CabinetState, HeartbeatAge), usize>, ProjectionError> {
        let mut counts: HashMap<(CabinetState, HeartbeatAge), usize> = CabinetState::ALL
            .iter()
            .filter(|state| **state != CabinetState::Unknown)
            .flat_map(|state| HeartbeatAge::ALL.map(|age| ((*state, age), 0)))
            .collect();
        let generation = self.generation(Projection::Cabinets).await?;
        let heartbeats = self.log.platform().heartbeat_times().await?;
        for row in sqlx::query("SELECT sbxlh, state FROM view_cabinets WHERE generation = $1")
            .bind(generation)
            .fetch_all(self.pool())
            .await?
        {
            let device: String = row.try_get("sbxlh")?;
            let age = HeartbeatAge::of(heartbeats.get(&device).copied(), now_ms);
            *counts.entry((state(&row, "state")?, age)).or_default() += 1;
        }
        Ok(counts)
    }

    /// Every cabinet's version (its event count) in the view: what an instance's sender
    /// registry compares with its cache to learn of enrolments, activations and disablings made
    /// through another instance.
    pub async fn cabinet_versions(&self) -> Result<Vec<(String, i64)>, ProjectionError> {
        let generation = self.generation(Projection::Cabinets).await?;
        let rows = sqlx::query("SELECT sbxlh, version FROM view_cabinets WHERE generation = $1")
            .bind(generation)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("sbxlh")?, row.try_get("version")?)))
            .collect()
    }

    /// A cabinet, if it exists and `scope` sees it.
    pub async fn cabinet(
        &self,
        scope: &Scope,
        device: &str,
    ) -> Result<Option<CabinetRecord>, ProjectionError> {
        let cabinets = self.generation(Projection::Cabinets).await?;
        let Some(row) = sqlx::query(
            "SELECT aggregate, state, unit FROM view_cabinets WHERE generation = $1 AND sbxlh = $2",
        )
        .bind(cabinets)
        .bind(device)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let unit: Option<String> = row.try_get("unit")?;
        if !scope.sees(unit.as_deref()) {
            return Ok(None);
        }
        let aggregate: String = row.try_get("aggregate")?;
        let aggregate: Cabinet = serde_json::from_str(&aggregate)
            .map_err(|e| ProjectionError::Decode(format!("cabinet {device}: {e}")))?;
        let occupants = self.occupants(device).await?;
        let bodies = aggregate
            .bodies
            .iter()
            .map(|body| {
                let mut drawers = Vec::new();
                for row in 1..=i64::from(body.rows) {
                    for column in 1..=i64::from(body.columns) {
                        let documents = occupants
                            .get(&(body.serial.clone(), row, column))
                            .cloned()
                            .unwrap_or_default();
                        drawers.push(DrawerOccupancy {
                            row,
                            column,
                            documents,
                        });
                    }
                }
                BodyOccupancy {
                    serial: body.serial.clone(),
                    rows: body.rows,
                    columns: body.columns,
                    drawers,
                }
            })
            .collect();
        let last_heartbeat =
            self.log
                .platform()
                .heartbeat(device)
                .await?
                .map(|(received_ms, status)| Heartbeat {
                    received_ms,
                    status,
                });
        Ok(Some(CabinetRecord {
            device: device.to_string(),
            unit,
            state: state(&row, "state")?,
            bodies,
            last_heartbeat,
        }))
    }

    /// Every cabinet `scope` sees, in SBXLH order, with its drawers counted as
    /// [`Reader::cabinet`] shows them: one statement over the cabinets, the documents in their
    /// drawers counted per drawer by the store (from an index that holds what it reads), and
    /// the heartbeats in one read, instead of a [`Reader::cabinet`] per cabinet.
    pub async fn cabinet_summaries(
        &self,
        scope: &Scope,
    ) -> Result<Vec<CabinetSummary>, ProjectionError> {
        let cabinets = self.generation(Projection::Cabinets).await?;
        let documents = self.generation(Projection::Documents).await?;
        let (in_scope, units) = scope.filter("unit", 2);
        let sql = format!(
            "SELECT sbxlh, aggregate, state, unit FROM view_cabinets \
             WHERE generation = $1{in_scope} ORDER BY sbxlh"
        );
        let mut query = sqlx::query(&sql).bind(cabinets);
        for unit in units {
            query = query.bind(unit);
        }
        let mut listed: Vec<(CabinetSummary, BodySizes)> = Vec::new();
        for row in query.fetch_all(self.pool()).await? {
            let device: String = row.try_get("sbxlh")?;
            let aggregate: String = row.try_get("aggregate")?;
            let aggregate: Cabinet = serde_json::from_str(&aggregate)
                .map_err(|e| ProjectionError::Decode(format!("cabinet {device}: {e}")))?;
            let bodies: BodySizes = aggregate
                .bodies
                .iter()
                .map(|b| (b.serial.clone(), (i64::from(b.rows), i64::from(b.columns))))
                .collect();
            let drawers = aggregate
                .bodies
                .iter()
                .map(|b| usize::from(b.rows) * usize::from(b.columns))
                .sum();
            listed.push((
                CabinetSummary {
                    device,
                    unit: row.try_get("unit")?,
                    state: state(&row, "state")?,
                    drawers,
                    occupied: 0,
                    documents: 0,
                    last_heartbeat_ms: None,
                },
                bodies,
            ));
        }
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (summary, _)) in listed.iter().enumerate() {
            index.insert(summary.device.clone(), i);
        }
        let devices: Vec<String> = listed.iter().map(|(s, _)| s.device.clone()).collect();
        for chunk in devices.chunks(DEVICES_PER_LOOKUP) {
            let placeholders: Vec<String> =
                (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT sbxlh, zjgxlh, drawer_row, drawer_col, COUNT(*) AS n FROM view_documents \
                 WHERE generation = $1 AND state = 'InCabinet' AND sbxlh IN ({}) \
                 GROUP BY sbxlh, zjgxlh, drawer_row, drawer_col",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(documents);
            for device in chunk {
                query = query.bind(device.as_str());
            }
            for row in query.fetch_all(self.pool()).await? {
                let device: String = row.try_get("sbxlh")?;
                let drawer: (Option<String>, Option<i64>, Option<i64>) = (
                    row.try_get("zjgxlh")?,
                    row.try_get("drawer_row")?,
                    row.try_get("drawer_col")?,
                );
                let Some((summary, bodies)) = index.get(&device).map(|i| &mut listed[*i]) else {
                    continue;
                };
                // Only the drawers the cabinet has, as `Reader::cabinet` lists them.
                if let (Some(body), Some(r), Some(c)) = drawer {
                    if let Some((rows, columns)) = bodies.get(&body) {
                        if (1..=*rows).contains(&r) && (1..=*columns).contains(&c) {
                            summary.occupied += 1;
                            summary.documents += row.try_get::<i64, _>("n")?.max(0) as usize;
                        }
                    }
                }
            }
        }
        let heartbeats = self.log.platform().heartbeat_times().await?;
        Ok(listed
            .into_iter()
            .map(|(mut summary, _)| {
                summary.last_heartbeat_ms = heartbeats.get(&summary.device).copied();
                summary
            })
            .collect())
    }

    /// The documents in the cabinet's drawers, by (body, row, column), each list in ZJBS order.
    async fn occupants(
        &self,
        device: &str,
    ) -> Result<HashMap<(String, i64, i64), Vec<String>>, ProjectionError> {
        let documents = self.generation(Projection::Documents).await?;
        let mut occupants: HashMap<(String, i64, i64), Vec<String>> = HashMap::new();
        for row in sqlx::query(
            "SELECT zjbs, zjgxlh, drawer_row, drawer_col FROM view_documents \
             WHERE generation = $1 AND sbxlh = $2 AND state = 'InCabinet' ORDER BY zjbs",
        )
        .bind(documents)
        .bind(device)
        .fetch_all(self.pool())
        .await?
        {
            let drawer: (Option<String>, Option<i64>, Option<i64>) = (
                row.try_get("zjgxlh")?,
                row.try_get("drawer_row")?,
                row.try_get("drawer_col")?,
            );
            if let (Some(body), Some(r), Some(c)) = drawer {
                occupants
                    .entry((body, r, c))
                    .or_default()
                    .push(row.try_get("zjbs")?);
            }
        }
        Ok(occupants)
    }
}

#[cfg(test)]
mod tests {
    use super::HeartbeatAge;

    #[test]
    fn heartbeat_ages_fall_in_their_buckets() {
        let minute = 60_000;
        let now = 1_000 * minute;
        let cases = [
            (None, HeartbeatAge::Never),
            (Some(now), HeartbeatAge::Under15Minutes),
            (Some(now - 15 * minute + 1), HeartbeatAge::Under15Minutes),
            (Some(now - 15 * minute), HeartbeatAge::Under1Hour),
            (Some(now - 60 * minute), HeartbeatAge::Under1Day),
            (Some(now - 24 * 60 * minute), HeartbeatAge::Older),
        ];
        for (received, age) in cases {
            assert_eq!(HeartbeatAge::of(received, now), age, "{received:?}");
        }
    }
}
