//! `view_alerts` (anomalies and device alarms), and the rejected reports of the platform's own
//! log, each with the unit it concerns. (Reconciliation alerts are the reconciliation's.)

use std::collections::HashMap;

use custody_eventlog::RejectionSummary;
use sqlx::Row as _;

use super::{Reader, Scope};
use crate::{Projection, ProjectionError};

/// At most this many of each kind of alert are listed.
const LIMIT: i64 = 500;

/// The alert kind rejected reports are listed under.
pub const REJECTED_REPORT: &str = "rejected_report";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alerts {
    /// Newest first.
    pub raised: Vec<ViewAlert>,
    /// Newest first.
    pub rejected_reports: Vec<RejectedReport>,
}

/// An anomaly or device alarm an event raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewAlert {
    pub kind: String,
    /// The alert's unit, else its document's or cabinet's.
    pub unit: Option<String>,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    /// JSON text.
    pub detail: String,
    pub raised_at: String,
}

/// A report the platform refused, with the unit of the cabinet that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedReport {
    pub unit: Option<String>,
    pub rejection: RejectionSummary,
}

impl Reader {
    /// The alerts `scope` sees, of one kind or (`kind` None) of every kind.
    pub async fn alerts(
        &self,
        scope: &Scope,
        kind: Option<&str>,
    ) -> Result<Alerts, ProjectionError> {
        let (alerts, documents, cabinets) = (
            self.generation(Projection::Alerts).await?,
            self.generation(Projection::Documents).await?,
            self.generation(Projection::Cabinets).await?,
        );
        let (in_scope, units) = scope.filter("COALESCE(a.unit, d.unit, c.unit)", 2);
        let sql = format!(
            "SELECT a.kind, a.aggregate_type, a.aggregate_id, a.sequence, a.detail, a.raised_at, \
             COALESCE(a.unit, d.unit, c.unit) AS owner FROM view_alerts a \
             LEFT JOIN view_documents d ON d.generation = {documents} \
             AND a.aggregate_type = 'Document' AND d.zjbs = a.aggregate_id \
             LEFT JOIN view_cabinets c ON c.generation = {cabinets} \
             AND a.aggregate_type = 'Cabinet' AND c.sbxlh = a.aggregate_id \
             WHERE a.generation = {alerts} AND ($1 = '' OR a.kind = $1){in_scope} \
             ORDER BY a.raised_ms DESC LIMIT {LIMIT}"
        );
        let mut query = sqlx::query(&sql).bind(kind.unwrap_or_default().to_string());
        for unit in units {
            query = query.bind(unit);
        }
        let raised = query
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(ViewAlert {
                    kind: row.try_get("kind")?,
                    unit: row.try_get("owner")?,
                    aggregate_type: row.try_get("aggregate_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    sequence: row.try_get("sequence")?,
                    detail: row.try_get("detail")?,
                    raised_at: row.try_get("raised_at")?,
                })
            })
            .collect::<Result<_, ProjectionError>>()?;
        let rejected_reports = match kind {
            None | Some(REJECTED_REPORT) => self.rejected_reports(scope, cabinets).await?,
            Some(_) => vec![],
        };
        Ok(Alerts {
            raised,
            rejected_reports,
        })
    }

    /// Rejected reports `scope` sees: by the sender's unit in the cabinets view, or by the unit
    /// a custody refusal touched.
    async fn rejected_reports(
        &self,
        scope: &Scope,
        cabinets: i64,
    ) -> Result<Vec<RejectedReport>, ProjectionError> {
        let mut unit_of: HashMap<String, Option<String>> = HashMap::new();
        for row in sqlx::query("SELECT sbxlh, unit FROM view_cabinets WHERE generation = $1")
            .bind(cabinets)
            .fetch_all(self.pool())
            .await?
        {
            unit_of.insert(row.try_get("sbxlh")?, row.try_get("unit")?);
        }
        Ok(self
            .log
            .platform()
            .rejections(LIMIT, None)
            .await?
            .into_iter()
            .filter_map(|rejection| {
                // A custody refusal concerns the unit whose document or person was touched as
                // much as the sender's: the readers of both see it (docs/custody.md).
                let senders_unit = unit_of.get(&rejection.ei).cloned().flatten();
                let unit = match &rejection.touched_unit {
                    Some(touched) if scope.sees(Some(touched)) => Some(touched.clone()),
                    _ => senders_unit,
                };
                scope
                    .sees(unit.as_deref())
                    .then_some(RejectedReport { unit, rejection })
            })
            .collect())
    }
}
