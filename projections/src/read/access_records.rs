//! `view_access_records` (存取记录): deposits, withdrawals and reconciliation corrections.

use sqlx::Row as _;

use super::{Page, Reader, Scope};
use crate::{Projection, ProjectionError};

/// One movement of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecordRow {
    /// ZJBS.
    pub document: String,
    /// The sequence of the document event that made it.
    pub sequence: i64,
    /// `deposit_new`, `deposit_return`, `lend`, `take_out`, `abnormal_withdrawal` or
    /// `reconciliation_correction`.
    pub kind: String,
    pub unit: String,
    /// SBXLH.
    pub device: String,
    /// ZJGXLH.
    pub body: String,
    pub row: i64,
    pub column: i64,
    /// The business serial (YWLSH).
    pub serial: Option<String>,
    /// RFC 3339, as the cabinet reported it.
    pub operated_at: String,
    pub destination: Option<String>,
    pub planned_return: Option<String>,
    pub anomaly: Option<String>,
}

/// Which records a list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecordFilter {
    /// Of this document (ZJBS) only.
    pub document: Option<String>,
    /// Of this cabinet (SBXLH) only.
    pub device: Option<String>,
    /// Operated at or after, epoch milliseconds.
    pub from_ms: i64,
    /// Operated at or before, epoch milliseconds.
    pub to_ms: i64,
}

impl Default for AccessRecordFilter {
    fn default() -> Self {
        AccessRecordFilter {
            document: None,
            device: None,
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        }
    }
}

impl Reader {
    /// A page of the records `scope` sees, newest first.
    pub async fn access_records(
        &self,
        scope: &Scope,
        filter: &AccessRecordFilter,
        page: Page,
    ) -> Result<Vec<AccessRecordRow>, ProjectionError> {
        let generation = self.generation(Projection::AccessRecords).await?;
        let (in_scope, units) = scope.filter("unit", 6);
        let sql = format!(
            "SELECT zjbs, sequence, kind, unit, sbxlh, zjgxlh, drawer_row, drawer_col, ywlsh, \
             operated_at, destination, planned_return, anomaly FROM view_access_records \
             WHERE generation = $1 AND ($2 = '' OR zjbs = $2) AND ($3 = '' OR sbxlh = $3) \
             AND operated_ms >= $4 AND operated_ms <= $5{in_scope} \
             ORDER BY operated_ms DESC, zjbs, sequence DESC LIMIT {} OFFSET {}",
            page.size,
            page.offset()
        );
        let mut query = sqlx::query(&sql)
            .bind(generation)
            .bind(filter.document.clone().unwrap_or_default())
            .bind(filter.device.clone().unwrap_or_default())
            .bind(filter.from_ms)
            .bind(filter.to_ms);
        for unit in units {
            query = query.bind(unit);
        }
        query
            .fetch_all(self.pool())
            .await?
            .iter()
            .map(|row| {
                Ok(AccessRecordRow {
                    document: row.try_get("zjbs")?,
                    sequence: row.try_get("sequence")?,
                    kind: row.try_get("kind")?,
                    unit: row.try_get("unit")?,
                    device: row.try_get("sbxlh")?,
                    body: row.try_get("zjgxlh")?,
                    row: row.try_get("drawer_row")?,
                    column: row.try_get("drawer_col")?,
                    serial: row.try_get("ywlsh")?,
                    operated_at: row.try_get("operated_at")?,
                    destination: row.try_get("destination")?,
                    planned_return: row.try_get("planned_return")?,
                    anomaly: row.try_get("anomaly")?,
                })
            })
            .collect()
    }
}
