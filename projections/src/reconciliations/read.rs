//! Reading the reconciliation results (SPEC §6, §7.1): typed rows of the active generation, in a
//! fixed order, so that the same events always read the same. Who may see what is the caller's
//! rule: every reader takes `visible`, asked with the unit a row belongs to, and `limit`, the
//! most rows of each list it answers.

use std::collections::{BTreeMap, HashSet};

use chrono::NaiveDate;
use custody_domain::reconciliation::{end_of_business_date, start_of_business_date};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::projector::status;
use crate::{Projection, ProjectionError};

/// Which results to read: a business date, a cabinet, both or neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultFilter {
    pub business_date: Option<NaiveDate>,
    /// The cabinet's device serial (`sbxlh`).
    pub device: Option<String>,
}

impl ResultFilter {
    /// `YYYY-MM-DD`, or "" for every date.
    fn date_text(&self) -> String {
        self.business_date
            .map(|d| d.to_string())
            .unwrap_or_default()
    }

    fn device_text(&self) -> String {
        self.device.clone().unwrap_or_default()
    }
}

/// A drawer as a row names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrawerRef {
    /// The cabinet body (`zjgxlh`).
    pub body: Option<String>,
    pub row: Option<i64>,
    pub column: Option<i64>,
}

/// One cabinet's result for one business date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    pub device: String,
    /// `YYYY-MM-DD`.
    pub business_date: String,
    /// The batch's serial (`dzywlsh`).
    pub serial: Option<String>,
    pub unit: Option<String>,
    pub received_at: Option<String>,
    pub as_of: Option<String>,
    pub documents_reported: Option<i64>,
    pub operations_reported: Option<i64>,
    pub summary: Summary,
    /// In the diff's order; empty where only the summary was read.
    pub state_deviations: Vec<StateDeviationRow>,
    pub log_deviations: Vec<LogDeviationRow>,
}

/// How many deviations a result has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub state_deviations: Option<i64>,
    pub unrepaired: Option<i64>,
    pub log_deviations: Option<i64>,
}

/// A state deviation (证件状态偏离).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDeviationRow {
    pub document: Option<String>,
    pub holder: Option<String>,
    pub holder_name: Option<String>,
    pub unit: Option<String>,
    /// `in_cabinet`, `out` or `not_reported`.
    pub cabinet_state: Option<String>,
    pub cabinet_drawer: Option<DrawerRef>,
    pub platform_state: Option<String>,
    /// The cabinet the platform has the document in, if any.
    pub platform_device: Option<String>,
    pub reason: Option<String>,
    pub repaired: bool,
    pub note: Option<String>,
}

/// An operation-log deviation (操作日志偏离).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDeviationRow {
    pub serial: Option<String>,
    /// `cabinet_only` or `platform_only`.
    pub side: Option<String>,
    pub operation: Option<String>,
    pub operated_at: Option<String>,
    pub document: Option<String>,
    pub note: Option<String>,
}

/// An abnormal withdrawal for a missing or invalid document: what an inventory run ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryGap {
    pub document: Option<String>,
    pub device: Option<String>,
    pub unit: Option<String>,
    pub drawer: DrawerRef,
    /// `missing` or `invalid`.
    pub reason: Option<String>,
    pub serial: Option<String>,
    pub operated_at: Option<String>,
}

fn text(row: &AnyRow, column: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(column).ok().flatten()
}

fn int(row: &AnyRow, column: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(column).ok().flatten()
}

async fn generation(pool: &AnyPool, projection: Projection) -> Result<i64, ProjectionError> {
    Ok(status(pool, projection).await?.active_generation)
}

const SUMMARY_COLUMNS: &str = "sbxlh, business_date, dzywlsh, unit, received_at, as_of, \
                               documents_reported, operations_reported, state_deviations, \
                               unrepaired, log_deviations";

fn summary_of(row: &AnyRow) -> BatchResult {
    BatchResult {
        device: text(row, "sbxlh").unwrap_or_default(),
        business_date: text(row, "business_date").unwrap_or_default(),
        serial: text(row, "dzywlsh"),
        unit: text(row, "unit"),
        received_at: text(row, "received_at"),
        as_of: text(row, "as_of"),
        documents_reported: int(row, "documents_reported"),
        operations_reported: int(row, "operations_reported"),
        summary: Summary {
            state_deviations: int(row, "state_deviations"),
            unrepaired: int(row, "unrepaired"),
            log_deviations: int(row, "log_deviations"),
        },
        state_deviations: Vec::new(),
        log_deviations: Vec::new(),
    }
}

impl crate::read::Reader {
    /// [`results`], with each state deviation's holder named: a deviation keeps only the
    /// holder's RYBS (data minimisation, docs/personal-data.md), and the name is read, opened,
    /// from the persons and documents views where it is sealed under the holder's key.
    pub async fn reconciliation_results(
        &self,
        filter: &ResultFilter,
        visible: impl Fn(Option<&str>) -> bool,
        limit: usize,
    ) -> Result<Vec<BatchResult>, ProjectionError> {
        let mut batches = results(self.log().platform().pool(), filter, visible, limit).await?;
        let unnamed: std::collections::HashSet<String> = batches
            .iter()
            .flat_map(|b| &b.state_deviations)
            .filter(|d| d.holder_name.is_none())
            .filter_map(|d| d.holder.clone())
            .collect();
        let names = self.names_of(&unnamed).await?;

        for deviation in batches.iter_mut().flat_map(|b| &mut b.state_deviations) {
            if deviation.holder_name.is_none() {
                deviation.holder_name = deviation
                    .holder
                    .as_ref()
                    .and_then(|h| names.get(h).cloned());
            }
        }
        Ok(batches)
    }
}

/// The reconciled batches `filter` names that `visible` lets through, newest date first, then
/// by cabinet, at most `limit`, each with its deviations.
pub async fn results(
    pool: &AnyPool,
    filter: &ResultFilter,
    visible: impl Fn(Option<&str>) -> bool,
    limit: usize,
) -> Result<Vec<BatchResult>, ProjectionError> {
    let generation = generation(pool, Projection::Reconciliations).await?;
    let (date, device) = (filter.date_text(), filter.device_text());
    let mut batches: Vec<BatchResult> = Vec::new();
    let mut keys: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM view_reconciliations \
         WHERE generation = $1 AND state = 'Reconciled' \
         AND ($2 = '' OR business_date = $2) AND ($3 = '' OR sbxlh = $3) \
         ORDER BY business_date DESC, sbxlh"
    ))
    .bind(generation)
    .bind(&date)
    .bind(&device)
    .fetch_all(pool)
    .await?
    {
        if batches.len() >= limit || !visible(text(&row, "unit").as_deref()) {
            continue;
        }
        let batch = summary_of(&row);
        keys.insert(
            (batch.device.clone(), batch.business_date.clone()),
            batches.len(),
        );
        batches.push(batch);
    }
    // The batches are newest first: the last one's date bounds the deviations to read.
    let Some(oldest) = batches.last().map(|b| b.business_date.clone()) else {
        return Ok(batches);
    };
    for row in sqlx::query(
        "SELECT sbxlh, business_date, kind, zjbs, holder_rybs, holder_name, unit, \
         cabinet_state, zjgxlh, drawer_row, drawer_col, platform_state, platform_sbxlh, reason, \
         repaired, ywlsh, side, operation, operated_at, note \
         FROM view_reconciliation_deviations WHERE generation = $1 \
         AND ($2 = '' OR business_date = $2) AND ($3 = '' OR sbxlh = $3) \
         AND business_date >= $4 ORDER BY business_date DESC, sbxlh, position",
    )
    .bind(generation)
    .bind(&date)
    .bind(&device)
    .bind(oldest)
    .fetch_all(pool)
    .await?
    {
        let key = (
            text(&row, "sbxlh").unwrap_or_default(),
            text(&row, "business_date").unwrap_or_default(),
        );
        let Some(batch) = keys.get(&key).and_then(|i| batches.get_mut(*i)) else {
            continue;
        };
        if text(&row, "kind").as_deref() == Some("state") {
            batch.state_deviations.push(StateDeviationRow {
                document: text(&row, "zjbs"),
                holder: text(&row, "holder_rybs"),
                holder_name: text(&row, "holder_name"),
                unit: text(&row, "unit"),
                cabinet_state: text(&row, "cabinet_state"),
                cabinet_drawer: text(&row, "zjgxlh").map(|body| DrawerRef {
                    body: Some(body),
                    row: int(&row, "drawer_row"),
                    column: int(&row, "drawer_col"),
                }),
                platform_state: text(&row, "platform_state"),
                platform_device: text(&row, "platform_sbxlh"),
                reason: text(&row, "reason"),
                repaired: int(&row, "repaired") == Some(1),
                note: text(&row, "note"),
            });
        } else {
            batch.log_deviations.push(LogDeviationRow {
                serial: text(&row, "ywlsh"),
                side: text(&row, "side"),
                operation: text(&row, "operation"),
                operated_at: text(&row, "operated_at"),
                document: text(&row, "zjbs"),
                note: text(&row, "note"),
            });
        }
    }
    Ok(batches)
}

/// The reconciled batches with an unrepaired state deviation or any operation-log deviation,
/// that `visible` lets through, newest date first, at most `limit`; summaries only.
pub async fn with_deviations(
    pool: &AnyPool,
    visible: impl Fn(Option<&str>) -> bool,
    limit: usize,
) -> Result<Vec<BatchResult>, ProjectionError> {
    let generation = generation(pool, Projection::Reconciliations).await?;
    let mut batches = Vec::new();
    for row in sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM view_reconciliations \
         WHERE generation = $1 AND state = 'Reconciled' \
         AND (unrepaired > 0 OR log_deviations > 0) ORDER BY business_date DESC, sbxlh"
    ))
    .bind(generation)
    .fetch_all(pool)
    .await?
    {
        if batches.len() >= limit || !visible(text(&row, "unit").as_deref()) {
            continue;
        }
        batches.push(summary_of(&row));
    }
    Ok(batches)
}

/// The (device, `YYYY-MM-DD`) pairs `filter` names that have a reconciled batch.
pub async fn reconciled(
    pool: &AnyPool,
    filter: &ResultFilter,
) -> Result<HashSet<(String, String)>, ProjectionError> {
    let generation = generation(pool, Projection::Reconciliations).await?;
    Ok(sqlx::query(
        "SELECT sbxlh, business_date FROM view_reconciliations \
         WHERE generation = $1 AND state = 'Reconciled' \
         AND ($2 = '' OR business_date = $2) AND ($3 = '' OR sbxlh = $3)",
    )
    .bind(generation)
    .bind(filter.date_text())
    .bind(filter.device_text())
    .fetch_all(pool)
    .await?
    .iter()
    .map(|row| {
        (
            text(row, "sbxlh").unwrap_or_default(),
            text(row, "business_date").unwrap_or_default(),
        )
    })
    .collect())
}

/// Batches reconciled for each business date from `first` to `last` (both included), as the
/// active generation has them; a date with none is absent.
pub async fn uploads_per_date(
    pool: &AnyPool,
    first: NaiveDate,
    last: NaiveDate,
) -> Result<BTreeMap<NaiveDate, i64>, ProjectionError> {
    let generation = generation(pool, Projection::Reconciliations).await?;
    let mut uploads = BTreeMap::new();
    // `YYYY-MM-DD` text orders as the dates do.
    for row in sqlx::query(
        "SELECT business_date, COUNT(*) AS batches FROM view_reconciliations \
         WHERE generation = $1 AND state = 'Reconciled' \
         AND business_date >= $2 AND business_date <= $3 GROUP BY business_date",
    )
    .bind(generation)
    .bind(first.to_string())
    .bind(last.to_string())
    .fetch_all(pool)
    .await?
    {
        let date: String = row.try_get("business_date")?;
        let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|e| ProjectionError::Decode(format!("business date {date}: {e}")))?;
        uploads.insert(date, row.try_get::<i64, _>("batches")?);
    }
    Ok(uploads)
}

/// The inventory gaps (optype 23 with reason `missing` or `invalid`) of the day and cabinet
/// `filter` names, from the access records, newest first, at most `limit`.
pub async fn inventory_gaps(
    pool: &AnyPool,
    filter: &ResultFilter,
    visible: impl Fn(Option<&str>) -> bool,
    limit: usize,
) -> Result<Vec<InventoryGap>, ProjectionError> {
    let (from, to) = match filter.business_date {
        Some(d) => (
            start_of_business_date(d).map_or(i64::MIN, |t| t.timestamp_millis()),
            end_of_business_date(d).map_or(i64::MAX, |t| t.timestamp_millis()),
        ),
        None => (i64::MIN, i64::MAX),
    };
    let generation = generation(pool, Projection::AccessRecords).await?;
    let mut gaps = Vec::new();
    for row in sqlx::query(
        "SELECT zjbs, sequence, unit, sbxlh, zjgxlh, drawer_row, drawer_col, ywlsh, operated_at, \
         anomaly FROM view_access_records WHERE generation = $1 AND kind = 'abnormal_withdrawal' \
         AND anomaly IN ('missing', 'invalid') AND ($2 = '' OR sbxlh = $2) \
         AND operated_ms >= $3 AND operated_ms < $4 ORDER BY operated_ms DESC, zjbs, sequence",
    )
    .bind(generation)
    .bind(filter.device_text())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?
    {
        if gaps.len() >= limit || !visible(text(&row, "unit").as_deref()) {
            continue;
        }
        gaps.push(InventoryGap {
            document: text(&row, "zjbs"),
            device: text(&row, "sbxlh"),
            unit: text(&row, "unit"),
            drawer: DrawerRef {
                body: text(&row, "zjgxlh"),
                row: int(&row, "drawer_row"),
                column: int(&row, "drawer_col"),
            },
            reason: text(&row, "anomaly"),
            serial: text(&row, "ywlsh"),
            operated_at: text(&row, "operated_at"),
        });
    }
    Ok(gaps)
}
