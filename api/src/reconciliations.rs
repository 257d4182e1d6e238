//! Nightly reconciliation on the read side (SPEC §6, §7.1; docs/reconciliation.md).
//!
//! - `GET /api/v1/reconciliations?date=&sbxlh=`: each cabinet's result for a business date (the
//!   state and operation-log deviations, and whether each was repaired), the inventory gaps of
//!   that day, and the cabinets that did not upload; `GET /api/v1/reconciliations.csv`: the same
//!   as one work list. Scoped to the caller's org subtree like every read.
//! - The result tables are derived from the Reconciliation aggregate's events: [`store`] writes
//!   a reconciled batch's rows once (a re-sent batch or a restart writes nothing new), and
//!   [`restore`] writes the rows of any reconciled batch that lacks them.
//! - [`check_missing_uploads`]: once a business date's window has closed, the active cabinets
//!   without a batch for it are kept as `reconciliation_missing` alerts.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Days, FixedOffset, NaiveDate, NaiveTime};
use custody_commands::Commands;
use custody_domain::cabinet::{Cabinet, CabinetEvent, CabinetState};
use custody_domain::reconciliation::{Reconciliation, ReconciliationState};
use custody_domain::transitions::Named;
use custody_domain::values::china_standard_time;
use custody_projections::Projection;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::auth::Caller;
use crate::error::{ErrorCode, WireError};
use crate::read::{database, generation, Scope};
use crate::state::AppState;

/// At most this many results, gaps or missing uploads in one answer.
const LIMIT: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reconciliations", get(reconciliations))
        .route("/api/v1/reconciliations.csv", get(reconciliations_csv))
}

// --- the upload window --------------------------------------------------------------------

/// When cabinets may upload their batch, China time: from `opens` (included) to `closes`
/// (excluded), past midnight when `closes` is earlier than `opens`; always when they are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconciliationWindow {
    pub opens: NaiveTime,
    pub closes: NaiveTime,
}

impl Default for ReconciliationWindow {
    /// 20:00 to 06:00, as the design has it (§2.1.4.10).
    fn default() -> Self {
        ReconciliationWindow {
            opens: NaiveTime::from_hms_opt(20, 0, 0).unwrap_or(NaiveTime::MIN),
            closes: NaiveTime::from_hms_opt(6, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

impl ReconciliationWindow {
    pub fn contains(&self, time: NaiveTime) -> bool {
        match self.opens.cmp(&self.closes) {
            std::cmp::Ordering::Less => self.opens <= time && time < self.closes,
            std::cmp::Ordering::Greater => time >= self.opens || time < self.closes,
            std::cmp::Ordering::Equal => true,
        }
    }

    /// The latest business date whose window has closed at `now`: the window of date D closes
    /// on D + 1 at `closes`.
    pub fn last_closed_date(&self, now: DateTime<FixedOffset>) -> Option<NaiveDate> {
        let local = now.with_timezone(&china_standard_time());
        let back = if local.time() >= self.closes { 1 } else { 2 };
        local.date_naive().checked_sub_days(Days::new(back))
    }
}

impl fmt::Display for ReconciliationWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.opens.format("%H:%M"),
            self.closes.format("%H:%M")
        )
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a window HH:MM-HH:MM")]
pub struct WindowParseError(String);

impl FromStr for ReconciliationWindow {
    type Err = WindowParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let time = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M")
                .or_else(|_| NaiveTime::parse_from_str(t.trim(), "%H:%M:%S"))
                .map_err(|_| WindowParseError(s.to_string()))
        };
        let (opens, closes) = s
            .split_once('-')
            .ok_or_else(|| WindowParseError(s.to_string()))?;
        Ok(ReconciliationWindow {
            opens: time(opens)?,
            closes: time(closes)?,
        })
    }
}

// --- the result tables --------------------------------------------------------------------

/// Rows of one multi-row insert: well under both backends' limits on bound parameters.
const ROWS_PER_INSERT: usize = 200;

const DEVIATION_COLUMNS: [&str; 21] = [
    "sbxlh",
    "business_date",
    "position",
    "kind",
    "zjbs",
    "holder_rybs",
    "holder_name",
    "unit",
    "cabinet_state",
    "zjgxlh",
    "drawer_row",
    "drawer_col",
    "platform_state",
    "platform_sbxlh",
    "reason",
    "repaired",
    "ywlsh",
    "side",
    "operation",
    "operated_at",
    "note",
];

/// A bound value of a row.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
}

fn text_cell(value: impl Into<String>) -> Cell {
    Cell::Text(Some(value.into()))
}

fn snake(value: &impl serde::Serialize) -> Option<String> {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
}

/// Writes a reconciled batch's rows, once: nothing when they exist already (they are a
/// function of the stored events, so a second writer would write the same).
pub(crate) async fn store(
    pool: &AnyPool,
    reconciliation: &Reconciliation,
) -> Result<(), WireError> {
    let (Some(diff), ReconciliationState::Reconciled) =
        (&reconciliation.diff, reconciliation.state)
    else {
        return Ok(());
    };
    let date = diff.business_date.to_string();
    let sbxlh = diff.device.to_string();
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    let mut unrepaired = 0i64;
    for d in &diff.state_deviations {
        let repaired = reconciliation.repaired(&d.document);
        if !repaired {
            unrepaired += 1;
        }
        let note = reconciliation
            .outcome(&d.document)
            .and_then(|o| o.note.clone());
        rows.push(vec![
            Cell::Text(Some("state".into())),
            text_cell(d.document.as_str()),
            Cell::Text(d.holder.as_ref().map(|h| h.to_string())),
            Cell::Text(d.holder_name.clone()),
            Cell::Text(d.unit.as_ref().map(|u| u.to_string())),
            Cell::Text(snake(&d.cabinet_state)),
            Cell::Text(d.cabinet_drawer.as_ref().map(|x| x.body.clone())),
            Cell::Int(d.cabinet_drawer.as_ref().map(|x| i64::from(x.row))),
            Cell::Int(d.cabinet_drawer.as_ref().map(|x| i64::from(x.column))),
            text_cell(d.platform_state.name()),
            Cell::Text(d.platform_location.as_ref().map(|l| l.device.to_string())),
            Cell::Text(snake(&d.reason)),
            Cell::Int(Some(i64::from(repaired))),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(note),
        ]);
    }
    for d in &diff.log_deviations {
        rows.push(vec![
            Cell::Text(Some("log".into())),
            Cell::Text(d.document.as_ref().map(|x| x.to_string())),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Int(None),
            Cell::Int(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Text(None),
            Cell::Int(None),
            text_cell(d.serial.as_str()),
            Cell::Text(snake(&d.side)),
            text_cell(d.operation.as_str()),
            Cell::Text(d.operated_at.map(|t| t.to_rfc3339())),
            Cell::Text(d.note.clone()),
        ]);
    }
    let mut tx = pool.begin().await.map_err(database)?;
    let inserted = sqlx::query(
        "INSERT INTO reconciliations (sbxlh, business_date, dzywlsh, unit, received_at, as_of, \
         documents_reported, operations_reported, state_deviations, unrepaired, log_deviations) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (sbxlh, business_date) DO NOTHING",
    )
    .bind(&sbxlh)
    .bind(&date)
    .bind(diff.serial.as_str())
    .bind(diff.unit.as_str())
    .bind(diff.received_at.to_rfc3339())
    .bind(diff.as_of.to_rfc3339())
    .bind(i64::from(diff.documents_reported))
    .bind(i64::from(diff.operations_reported))
    .bind(diff.state_deviations.len() as i64)
    .bind(unrepaired)
    .bind(diff.log_deviations.len() as i64)
    .execute(&mut *tx)
    .await
    .map_err(database)?;
    if inserted.rows_affected() == 0 {
        return Ok(());
    }
    for (chunk_index, chunk) in rows.chunks(ROWS_PER_INSERT).enumerate() {
        let width = DEVIATION_COLUMNS.len();
        let values: Vec<String> = (0..chunk.len())
            .map(|r| {
                let cells: Vec<String> =
                    (1..=width).map(|c| format!("${}", r * width + c)).collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO reconciliation_deviations ({}) VALUES {}",
            DEVIATION_COLUMNS.join(", "),
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for (i, row) in chunk.iter().enumerate() {
            let position = (chunk_index * ROWS_PER_INSERT + i) as i64;
            query = query.bind(sbxlh.clone()).bind(date.clone()).bind(position);
            for cell in row {
                query = match cell {
                    Cell::Text(v) => query.bind(v.clone()),
                    Cell::Int(v) => query.bind(*v),
                };
            }
        }
        query.execute(&mut *tx).await.map_err(database)?;
    }
    tx.commit().await.map_err(database)?;
    Ok(())
}

/// Writes the rows of every reconciled batch that lacks them (after a crash between the last
/// event and the rows); returns how many.
pub async fn restore(commands: &Commands) -> Result<usize, WireError> {
    let pool = commands.log().platform().pool();
    let stored: HashSet<String> = sqlx::query("SELECT sbxlh, business_date FROM reconciliations")
        .fetch_all(pool)
        .await
        .map_err(database)?
        .iter()
        .filter_map(|row| {
            let sbxlh = text(row, "sbxlh")?;
            let date = NaiveDate::parse_from_str(&text(row, "business_date")?, "%Y-%m-%d").ok()?;
            Some(format!("{sbxlh}:{}", date.format("%Y%m%d")))
        })
        .collect();
    let mut restored = 0;
    for id in commands
        .log()
        .aggregate_ids(Reconciliation::AGGREGATE)
        .await?
    {
        if stored.contains(&id) {
            continue;
        }
        let reconciliation: Reconciliation = commands.load(&id).await?;
        if reconciliation.state == ReconciliationState::Reconciled {
            store(pool, &reconciliation).await?;
            restored += 1;
        }
    }
    Ok(restored)
}

// --- missing uploads ----------------------------------------------------------------------

/// Keeps every active cabinet that existed on the last business date whose window has closed,
/// and has no batch for it, as a missing upload; returns how many it added. Idempotent.
pub async fn check_missing_uploads(
    commands: &Commands,
    window: ReconciliationWindow,
) -> Result<usize, WireError> {
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
) -> Result<usize, WireError> {
    let log = commands.log();
    let pool = log.platform().pool();
    let end_of_day = end_of(date)?;
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
                .map_err(|e| WireError::internal("cabinet event", e))?;
            cqrs_es::Aggregate::apply(&mut cabinet, decoded);
        }
        if cabinet.state != CabinetState::Active {
            continue;
        }
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
        .await
        .map_err(database)?;
        added += result.rows_affected() as usize;
    }
    Ok(added)
}

/// The start of the next day, China time: the end of the business date.
pub(crate) fn end_of(date: NaiveDate) -> Result<DateTime<FixedOffset>, WireError> {
    date.checked_add_days(Days::new(1))
        .and_then(|next| {
            next.and_time(NaiveTime::MIN)
                .and_local_timezone(china_standard_time())
                .single()
        })
        .ok_or_else(|| WireError::new(ErrorCode::InvalidField, format!("no day after {date}")))
}

/// Restores missing rows once, then checks for missing uploads every minute, each closed
/// business date once, while the service runs.
pub fn spawn_missing_upload_check(state: &AppState) {
    // Weak: the task ends with the service instead of keeping its store open.
    let commands: Weak<Commands> = Arc::downgrade(&state.commands);
    let window = state.reconciliation_window;
    tokio::spawn(async move {
        if let Some(commands) = commands.upgrade() {
            if let Err(error) = restore(&commands).await {
                tracing::warn!(%error, "could not restore the reconciliation tables");
            }
        }
        let mut done: Option<NaiveDate> = None;
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            let Some(commands) = commands.upgrade() else {
                return;
            };
            let date = window.last_closed_date(commands.clock().now());
            if date.is_none() || date == done {
                continue;
            }
            match check_missing_uploads(&commands, window).await {
                Ok(_) => done = date,
                Err(error) => tracing::warn!(%error, "could not check for missing uploads"),
            }
        }
    });
}

// --- reads --------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ResultQuery {
    date: Option<String>,
    sbxlh: Option<String>,
}

/// A business date given as `YYYY-MM-DD` or `YYYYMMDD`.
fn query_date(value: &Option<String>) -> Result<Option<NaiveDate>, WireError> {
    match value.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
            .or_else(|_| NaiveDate::parse_from_str(v, "%Y%m%d"))
            .map(Some)
            .map_err(|_| WireError::new(ErrorCode::InvalidField, "date is not YYYY-MM-DD")),
    }
}

fn text(row: &AnyRow, column: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(column).ok().flatten()
}

fn int(row: &AnyRow, column: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(column).ok().flatten()
}

/// Everything the two read routes answer, in a fixed order (so the same events always read
/// the same, byte for byte).
struct Results {
    batches: Vec<Value>,
    gaps: Vec<Value>,
    missing: Vec<Value>,
}

async fn results(
    state: &AppState,
    scope: &Scope,
    query: &ResultQuery,
) -> Result<Results, WireError> {
    let pool = state.commands.log().platform().pool();
    let date = query_date(&query.date)?;
    let date_text = date.map(|d| d.to_string()).unwrap_or_default();
    let sbxlh = query.sbxlh.clone().unwrap_or_default();

    let mut batches: Vec<Value> = Vec::new();
    let mut keys: BTreeMap<(String, String), usize> = BTreeMap::new();
    for row in sqlx::query(
        "SELECT sbxlh, business_date, dzywlsh, unit, received_at, as_of, documents_reported, \
         operations_reported, state_deviations, unrepaired, log_deviations FROM reconciliations \
         WHERE ($1 = '' OR business_date = $1) AND ($2 = '' OR sbxlh = $2) \
         ORDER BY business_date DESC, sbxlh",
    )
    .bind(&date_text)
    .bind(&sbxlh)
    .fetch_all(pool)
    .await
    .map_err(database)?
    {
        if !scope.sees(text(&row, "unit").as_deref()) || batches.len() >= LIMIT {
            continue;
        }
        let key = (
            text(&row, "sbxlh").unwrap_or_default(),
            text(&row, "business_date").unwrap_or_default(),
        );
        keys.insert(key.clone(), batches.len());
        batches.push(json!({
            "sbxlh": key.0,
            "date": key.1,
            "dzywlsh": text(&row, "dzywlsh"),
            "unit": text(&row, "unit"),
            "received_at": text(&row, "received_at"),
            "as_of": text(&row, "as_of"),
            "documents_reported": int(&row, "documents_reported"),
            "operations_reported": int(&row, "operations_reported"),
            "summary": {
                "state_deviations": int(&row, "state_deviations"),
                "unrepaired": int(&row, "unrepaired"),
                "log_deviations": int(&row, "log_deviations"),
            },
            "state_deviations": [],
            "log_deviations": [],
        }));
    }
    // The batches are newest first: the last one's date bounds the deviations to read.
    if let Some(oldest) = batches
        .last()
        .and_then(|b| b["date"].as_str())
        .map(str::to_string)
    {
        let sql = format!(
            "SELECT {} FROM reconciliation_deviations \
             WHERE ($1 = '' OR business_date = $1) AND ($2 = '' OR sbxlh = $2) \
             AND business_date >= $3 ORDER BY business_date DESC, sbxlh, position",
            DEVIATION_COLUMNS.join(", ")
        );
        for row in sqlx::query(&sql)
            .bind(&date_text)
            .bind(&sbxlh)
            .bind(oldest)
            .fetch_all(pool)
            .await
            .map_err(database)?
        {
            let key = (
                text(&row, "sbxlh").unwrap_or_default(),
                text(&row, "business_date").unwrap_or_default(),
            );
            let Some(batch) = keys.get(&key).and_then(|i| batches.get_mut(*i)) else {
                continue;
            };
            if text(&row, "kind").as_deref() == Some("state") {
                let drawer = text(&row, "zjgxlh").map(|body| {
                    json!({"zjgxlh": body, "row": int(&row, "drawer_row"), "col": int(&row, "drawer_col")})
                });
                if let Some(list) = batch["state_deviations"].as_array_mut() {
                    list.push(json!({
                        "zjbs": text(&row, "zjbs"),
                        "holder": {"rybs": text(&row, "holder_rybs"), "xm": text(&row, "holder_name")},
                        "unit": text(&row, "unit"),
                        "cabinet_state": text(&row, "cabinet_state"),
                        "cabinet_drawer": drawer,
                        "platform_state": text(&row, "platform_state"),
                        "platform_sbxlh": text(&row, "platform_sbxlh"),
                        "reason": text(&row, "reason"),
                        "repaired": int(&row, "repaired") == Some(1),
                        "note": text(&row, "note"),
                    }));
                }
            } else if let Some(list) = batch["log_deviations"].as_array_mut() {
                list.push(json!({
                    "ywlsh": text(&row, "ywlsh"),
                    "side": text(&row, "side"),
                    "operation": text(&row, "operation"),
                    "operated_at": text(&row, "operated_at"),
                    "zjbs": text(&row, "zjbs"),
                    "note": text(&row, "note"),
                }));
            }
        }
    }

    // Inventory gaps (optype 23, missing or invalid) from the access records, per day.
    let (from, to) = match date {
        Some(d) => (
            start_of(d)?.timestamp_millis(),
            end_of(d)?.timestamp_millis(),
        ),
        None => (i64::MIN, i64::MAX),
    };
    let ag = generation(state, Projection::AccessRecords).await?;
    let mut gaps = Vec::new();
    for row in sqlx::query(
        "SELECT zjbs, sequence, unit, sbxlh, zjgxlh, drawer_row, drawer_col, ywlsh, operated_at, \
         anomaly FROM view_access_records WHERE generation = $1 AND kind = 'abnormal_withdrawal' \
         AND anomaly IN ('missing', 'invalid') AND ($2 = '' OR sbxlh = $2) \
         AND operated_ms >= $3 AND operated_ms < $4 ORDER BY operated_ms DESC, zjbs, sequence",
    )
    .bind(ag)
    .bind(&sbxlh)
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await
    .map_err(database)?
    {
        if !scope.sees(text(&row, "unit").as_deref()) || gaps.len() >= LIMIT {
            continue;
        }
        gaps.push(json!({
            "zjbs": text(&row, "zjbs"),
            "sbxlh": text(&row, "sbxlh"),
            "unit": text(&row, "unit"),
            "drawer": {"zjgxlh": text(&row, "zjgxlh"), "row": int(&row, "drawer_row"), "col": int(&row, "drawer_col")},
            "reason": text(&row, "anomaly"),
            "ywlsh": text(&row, "ywlsh"),
            "operated_at": text(&row, "operated_at"),
        }));
    }

    let mut missing = Vec::new();
    for row in missing_rows(pool, &date_text, &sbxlh).await? {
        if !scope.sees(text(&row, "unit").as_deref()) || missing.len() >= LIMIT {
            continue;
        }
        missing.push(json!({
            "sbxlh": text(&row, "sbxlh"),
            "date": text(&row, "business_date"),
            "unit": text(&row, "unit"),
        }));
    }
    Ok(Results {
        batches,
        gaps,
        missing,
    })
}

/// Missing uploads not made good since (a late batch, if the window allowed one).
async fn missing_rows(pool: &AnyPool, date: &str, sbxlh: &str) -> Result<Vec<AnyRow>, WireError> {
    sqlx::query(
        "SELECT m.sbxlh, m.business_date, m.unit, m.detected_ms FROM reconciliation_missing m \
         WHERE ($1 = '' OR m.business_date = $1) AND ($2 = '' OR m.sbxlh = $2) \
         AND NOT EXISTS (SELECT 1 FROM reconciliations r WHERE r.sbxlh = m.sbxlh \
         AND r.business_date = m.business_date) \
         ORDER BY m.business_date DESC, m.sbxlh",
    )
    .bind(date)
    .bind(sbxlh)
    .fetch_all(pool)
    .await
    .map_err(database)
}

fn start_of(date: NaiveDate) -> Result<DateTime<FixedOffset>, WireError> {
    date.and_time(NaiveTime::MIN)
        .and_local_timezone(china_standard_time())
        .single()
        .ok_or_else(|| WireError::new(ErrorCode::InvalidField, format!("no start of {date}")))
}

async fn reconciliations(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ResultQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let results = results(&state, &scope, &query).await?;
    Ok(Json(json!({
        "reconciliations": results.batches,
        "inventory_gaps": results.gaps,
        "missing_uploads": results.missing,
    })))
}

/// The columns of the CSV work list, one row per deviation, gap or missing upload.
const CSV_HEADER: [&str; 16] = [
    "kind",
    "date",
    "sbxlh",
    "dzywlsh",
    "zjbs",
    "holder_name",
    "unit",
    "cabinet_state",
    "platform_state",
    "reason",
    "repaired",
    "ywlsh",
    "operation",
    "operated_at",
    "note",
    "drawer",
];

/// One CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

fn field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn drawer_field(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        d => format!(
            "{}/{}/{}",
            field(&d["zjgxlh"]),
            field(&d["row"]),
            field(&d["col"])
        ),
    }
}

async fn reconciliations_csv(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ResultQuery>,
) -> Result<Response, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let results = results(&state, &scope, &query).await?;
    // A byte-order mark, so that spreadsheet programs read the Chinese names as UTF-8.
    let mut out = String::from("\u{feff}");
    out.push_str(&csv_line(&CSV_HEADER.map(str::to_string)));
    for batch in &results.batches {
        let common = |kind: &str| {
            vec![
                kind.to_string(),
                field(&batch["date"]),
                field(&batch["sbxlh"]),
                field(&batch["dzywlsh"]),
            ]
        };
        for d in batch["state_deviations"].as_array().into_iter().flatten() {
            let mut row = common("state");
            row.extend([
                field(&d["zjbs"]),
                field(&d["holder"]["xm"]),
                field(&d["unit"]),
                field(&d["cabinet_state"]),
                field(&d["platform_state"]),
                field(&d["reason"]),
                if d["repaired"] == Value::Bool(true) {
                    "yes"
                } else {
                    "no"
                }
                .to_string(),
                String::new(),
                String::new(),
                String::new(),
                field(&d["note"]),
                drawer_field(&d["cabinet_drawer"]),
            ]);
            out.push_str(&csv_line(&row));
        }
        for d in batch["log_deviations"].as_array().into_iter().flatten() {
            let mut row = common(&format!("log_{}", field(&d["side"])));
            row.extend([
                field(&d["zjbs"]),
                String::new(),
                field(&batch["unit"]),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                field(&d["ywlsh"]),
                field(&d["operation"]),
                field(&d["operated_at"]),
                field(&d["note"]),
                String::new(),
            ]);
            out.push_str(&csv_line(&row));
        }
    }
    for gap in &results.gaps {
        let day: String = field(&gap["operated_at"]).chars().take(10).collect();
        out.push_str(&csv_line(&[
            "inventory_gap".to_string(),
            day,
            field(&gap["sbxlh"]),
            String::new(),
            field(&gap["zjbs"]),
            String::new(),
            field(&gap["unit"]),
            String::new(),
            String::new(),
            field(&gap["reason"]),
            "no".to_string(),
            field(&gap["ywlsh"]),
            "abnormal_withdrawal".to_string(),
            field(&gap["operated_at"]),
            String::new(),
            drawer_field(&gap["drawer"]),
        ]));
    }
    for missing in &results.missing {
        let mut row = vec![
            "missing_upload".to_string(),
            field(&missing["date"]),
            field(&missing["sbxlh"]),
        ];
        row.extend(std::iter::repeat_n(String::new(), 3));
        row.push(field(&missing["unit"]));
        row.extend(std::iter::repeat_n(String::new(), 9));
        out.push_str(&csv_line(&row));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"reconciliations.csv\"",
            ),
        ],
        out,
    )
        .into_response())
}

// --- alerts -------------------------------------------------------------------------------

/// The reconciliation alerts a caller sees (`GET /api/v1/alerts`): `reconciliation_missing`, a
/// cabinet that did not upload a closed business date, and `reconciliation_deviation`, a batch
/// with unrepaired state deviations or any operation-log deviation. `kind` "" means every kind.
pub async fn alerts(state: &AppState, scope: &Scope, kind: &str) -> Result<Vec<Value>, WireError> {
    let pool = state.commands.log().platform().pool();
    let mut items = Vec::new();
    if kind.is_empty() || kind == "reconciliation_missing" {
        for row in missing_rows(pool, "", "").await? {
            let unit = text(&row, "unit");
            if !scope.sees(unit.as_deref()) || items.len() >= LIMIT {
                continue;
            }
            let (sbxlh, date) = (text(&row, "sbxlh"), text(&row, "business_date"));
            items.push(json!({
                "kind": "reconciliation_missing",
                "unit": unit,
                "subject": {"type": "Reconciliation", "id": subject_id(&sbxlh, &date),
                            "sbxlh": sbxlh, "date": date},
                "detail": {"sbxlh": sbxlh, "date": date},
                "raised_at": int(&row, "detected_ms")
                    .and_then(DateTime::from_timestamp_millis)
                    .map(|t| t.with_timezone(&china_standard_time()).to_rfc3339()),
            }));
        }
    }
    if kind.is_empty() || kind == "reconciliation_deviation" {
        let mut count = 0;
        for row in sqlx::query(
            "SELECT sbxlh, business_date, dzywlsh, unit, received_at, state_deviations, \
             unrepaired, log_deviations FROM reconciliations \
             WHERE unrepaired > 0 OR log_deviations > 0 ORDER BY business_date DESC, sbxlh",
        )
        .fetch_all(pool)
        .await
        .map_err(database)?
        {
            let unit = text(&row, "unit");
            if !scope.sees(unit.as_deref()) || count >= LIMIT {
                continue;
            }
            count += 1;
            let (sbxlh, date) = (text(&row, "sbxlh"), text(&row, "business_date"));
            items.push(json!({
                "kind": "reconciliation_deviation",
                "unit": unit,
                "subject": {"type": "Reconciliation", "id": subject_id(&sbxlh, &date),
                            "sbxlh": sbxlh, "date": date},
                "detail": {"dzywlsh": text(&row, "dzywlsh"),
                           "state_deviations": int(&row, "state_deviations"),
                           "unrepaired": int(&row, "unrepaired"),
                           "log_deviations": int(&row, "log_deviations")},
                "raised_at": text(&row, "received_at"),
            }));
        }
    }
    Ok(items)
}

/// The Reconciliation aggregate id of a row: `<sbxlh>:<YYYYMMDD>`.
fn subject_id(sbxlh: &Option<String>, date: &Option<String>) -> String {
    format!(
        "{}:{}",
        sbxlh.as_deref().unwrap_or_default(),
        date.as_deref().unwrap_or_default().replace('-', "")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, s).expect("time")
    }

    #[test]
    fn the_window_runs_past_midnight_and_excludes_its_end() {
        let window = ReconciliationWindow::default();
        assert!(!window.contains(at(19, 59, 59)));
        assert!(window.contains(at(20, 0, 0)));
        assert!(window.contains(at(0, 0, 0)));
        assert!(window.contains(at(5, 59, 59)));
        assert!(!window.contains(at(6, 0, 0)));
        assert!(!window.contains(at(12, 0, 0)));
        let day: ReconciliationWindow = "01:00-05:30".parse().expect("window");
        assert!(
            day.contains(at(1, 0, 0)) && !day.contains(at(5, 30, 0)) && !day.contains(at(23, 0, 0))
        );
        assert_eq!(day.to_string(), "01:00-05:30");
        assert!("20:00".parse::<ReconciliationWindow>().is_err());
        assert!("always".parse::<ReconciliationWindow>().is_err());
    }

    #[test]
    fn a_date_closes_at_the_end_of_its_window() {
        let window = ReconciliationWindow::default();
        let time = |t: &str| DateTime::parse_from_rfc3339(t).expect("time");
        let date = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d);
        assert_eq!(
            window.last_closed_date(time("2026-11-24T05:59:59+08:00")),
            date(22)
        );
        assert_eq!(
            window.last_closed_date(time("2026-11-24T06:00:00+08:00")),
            date(23)
        );
        // The same moment written in UTC.
        assert_eq!(
            window.last_closed_date(time("2026-11-23T22:00:00+00:00")),
            date(23)
        );
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_line(&["a".into(), "b\nc".into()]), "a,\"b\nc\"\r\n");
    }
}
