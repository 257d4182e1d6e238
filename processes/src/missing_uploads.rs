//! The missing-upload check of the nightly reconciliation (SPEC §6; docs/reconciliation.md),
//! run by the clock: once a business date's window has closed, every cabinet that is `Active`,
//! existed before the end of that date and has no batch for it is kept in
//! `reconciliation_missing` (this process's table). Idempotent: a date checked twice, or by two
//! instances, keeps each cabinet once.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate};
use custody_commands::Commands;
use custody_domain::cabinet::{Cabinet, CabinetEvent, CabinetState};
use custody_domain::reconciliation::{end_of_business_date, Reconciliation, ReconciliationWindow};
use custody_projections::reconciliations::read::{reconciled, ResultFilter};
use sqlx::{AnyPool, Row};

use crate::ProcessError;

/// A cabinet that had not uploaded a business date's batch when its window closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingUpload {
    pub device: String,
    /// `YYYY-MM-DD`.
    pub business_date: String,
    pub unit: Option<String>,
    /// When the check found it, epoch milliseconds.
    pub detected_ms: i64,
}

/// Keeps every active cabinet that existed on the last business date whose window has closed,
/// and has no batch for it, as a missing upload; returns how many it added. Idempotent.
pub async fn check_missing_uploads(
    commands: &Commands,
    window: ReconciliationWindow,
) -> Result<usize, ProcessError> {
    let now = commands.clock().now();
    let Some(date) = window.last_closed_date(now) else {
        return Ok(0);
    };
    check_missing_uploads_for(commands, date).await
}

/// As [`check_missing_uploads`], for a given business date.
pub async fn check_missing_uploads_for(
    commands: &Commands,
    date: NaiveDate,
) -> Result<usize, ProcessError> {
    let log = commands.log();
    let pool = log.platform().pool();
    let end_of_day = end_of_business_date(date)
        .ok_or_else(|| ProcessError::Decode(format!("no day after {date}")))?;
    let mut added = 0;
    for sbxlh in log.aggregate_ids(Cabinet::AGGREGATE).await? {
        let events = log.events_of(Cabinet::AGGREGATE, &sbxlh).await?;
        // A cabinet enrolled after the date had nothing to upload for it.
        let existed = events
            .first()
            .and_then(|e| e.metadata["recorded_at"].as_str())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t < end_of_day);
        if !existed {
            continue;
        }
        let mut cabinet = Cabinet::default();
        for event in &events {
            let decoded: CabinetEvent = serde_json::from_value(event.payload.clone())
                .map_err(|e| ProcessError::Decode(format!("cabinet event: {e}")))?;
            cqrs_es::Aggregate::apply(&mut cabinet, decoded);
        }
        if cabinet.state != CabinetState::Active {
            continue;
        }
        // The event store, not the view: a batch just taken counts before it is projected.
        let id = format!("{sbxlh}:{}", date.format("%Y%m%d"));
        if !log
            .events_of(Reconciliation::AGGREGATE, &id)
            .await?
            .is_empty()
        {
            continue;
        }
        let result = sqlx::query(
            "INSERT INTO reconciliation_missing (sbxlh, business_date, unit, detected_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (sbxlh, business_date) DO NOTHING",
        )
        .bind(&sbxlh)
        .bind(date.to_string())
        .bind(cabinet.unit.as_ref().map(|u| u.to_string()))
        .bind(commands.clock().now().timestamp_millis())
        .execute(pool)
        .await?;
        added += result.rows_affected() as usize;
    }
    Ok(added)
}

/// The missing uploads `filter` names that no batch has made good since (a late batch, if the
/// window allowed one, as the reconciliations view has it), newest date first, then by cabinet.
pub async fn missing_uploads(
    pool: &AnyPool,
    filter: &ResultFilter,
) -> Result<Vec<MissingUpload>, ProcessError> {
    let made_good: HashSet<(String, String)> = reconciled(pool, filter).await?;
    let date = filter
        .business_date
        .map(|d| d.to_string())
        .unwrap_or_default();
    let device = filter.device.clone().unwrap_or_default();
    let rows = sqlx::query(
        "SELECT sbxlh, business_date, unit, detected_ms FROM reconciliation_missing \
         WHERE ($1 = '' OR business_date = $1) AND ($2 = '' OR sbxlh = $2) \
         ORDER BY business_date DESC, sbxlh",
    )
    .bind(date)
    .bind(device)
    .fetch_all(pool)
    .await?;
    let mut missing = Vec::with_capacity(rows.len());
    for row in rows {
        let upload = MissingUpload {
            device: row.try_get("sbxlh")?,
            business_date: row.try_get("business_date")?,
            unit: row.try_get("unit")?,
            detected_ms: row.try_get("detected_ms")?,
        };
        if !made_good.contains(&(upload.device.clone(), upload.business_date.clone())) {
            missing.push(upload);
        }
    }
    Ok(missing)
}

/// How many missing uploads each of `dates` has that no batch has made good since (as
/// [`missing_uploads`] lists them).
pub async fn missing_uploads_per_date(
    pool: &AnyPool,
    dates: impl IntoIterator<Item = NaiveDate>,
) -> Result<BTreeMap<NaiveDate, usize>, ProcessError> {
    let mut counts = BTreeMap::new();
    for date in dates {
        let filter = ResultFilter {
            business_date: Some(date),
            device: None,
        };
        counts.insert(date, missing_uploads(pool, &filter).await?.len());
    }
    Ok(counts)
}
