//! The reconciliation results on the read API (SPEC §6, §7.1; docs/reconciliation.md):
//! `GET /api/v1/reconciliations?date=&sbxlh=` as JSON, `GET /api/v1/reconciliations.csv` as one
//! work list, and the reconciliation block of `GET /api/v1/alerts`. Each parses its query,
//! calls the typed readers (the `reconciliations` projection, the missing-upload process's
//! table) and shapes the answer; scoped to the caller's org subtree like every read.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate};
use custody_domain::values::china_standard_time;
use custody_processes::missing_uploads::{missing_uploads, MissingUpload};
use custody_projections::reconciliations::read::{
    self, BatchResult, DrawerRef, InventoryGap, ResultFilter,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ErrorCode, WireError};
use crate::scope::Scope;
use crate::state::AppState;

/// At most this many results, gaps or missing uploads in one answer.
const LIMIT: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reconciliations", get(reconciliations))
        .route("/api/v1/reconciliations.csv", get(reconciliations_csv))
}

#[derive(Deserialize, Default)]
pub(crate) struct ResultQuery {
    pub date: Option<String>,
    pub sbxlh: Option<String>,
}

impl ResultQuery {
    /// The filter the query names; a business date given as `YYYY-MM-DD` or `YYYYMMDD`.
    fn filter(&self) -> Result<ResultFilter, WireError> {
        let business_date = match self.date.as_deref().filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                NaiveDate::parse_from_str(v, "%Y-%m-%d")
                    .or_else(|_| NaiveDate::parse_from_str(v, "%Y%m%d"))
                    .map_err(|_| {
                        WireError::new(ErrorCode::InvalidField, "date is not YYYY-MM-DD")
                    })?,
            ),
        };
        Ok(ResultFilter {
            business_date,
            device: self.sbxlh.clone().filter(|s| !s.is_empty()),
        })
    }
}

fn view_error(error: impl std::fmt::Display) -> WireError {
    WireError::internal("reconciliation results", error)
}

/// Everything the two read routes answer, in a fixed order (so the same events always read
/// the same, byte for byte).
pub(crate) struct Results {
    pub batches: Vec<BatchResult>,
    pub gaps: Vec<InventoryGap>,
    pub missing: Vec<MissingUpload>,
}

pub(crate) async fn results(
    state: &AppState,
    scope: &Scope,
    query: &ResultQuery,
) -> Result<Results, WireError> {
    let filter = query.filter()?;
    let pool = state.commands.log().platform().pool();
    let sees = |unit: Option<&str>| scope.sees(unit);
    let batches = custody_projections::read::Reader::new(state.commands.log().clone())
        .reconciliation_results(&filter, sees, LIMIT)
        .await
        .map_err(view_error)?;
    let gaps = read::inventory_gaps(pool, &filter, sees, LIMIT)
        .await
        .map_err(view_error)?;
    let missing = missing_uploads(pool, &filter)
        .await
        .map_err(view_error)?
        .into_iter()
        .filter(|m| scope.sees(m.unit.as_deref()))
        .take(LIMIT)
        .collect();
    Ok(Results {
        batches,
        gaps,
        missing,
    })
}

fn drawer_json(drawer: &DrawerRef) -> Value {
    json!({"zjgxlh": drawer.body, "row": drawer.row, "col": drawer.column})
}

fn batch_json(batch: &BatchResult) -> Value {
    let states: Vec<Value> = batch
        .state_deviations
        .iter()
        .map(|d| {
            json!({
                "zjbs": d.document,
                "holder": {"rybs": d.holder, "xm": d.holder_name},
                "unit": d.unit,
                "cabinet_state": d.cabinet_state,
                "cabinet_drawer": d.cabinet_drawer.as_ref().map(drawer_json),
                "platform_state": d.platform_state,
                "platform_sbxlh": d.platform_device,
                "reason": d.reason,
                "repaired": d.repaired,
                "note": d.note,
            })
        })
        .collect();
    let logs: Vec<Value> = batch
        .log_deviations
        .iter()
        .map(|d| {
            json!({
                "ywlsh": d.serial,
                "side": d.side,
                "operation": d.operation,
                "operated_at": d.operated_at,
                "zjbs": d.document,
                "note": d.note,
            })
        })
        .collect();
    json!({
        "sbxlh": batch.device,
        "date": batch.business_date,
        "dzywlsh": batch.serial,
        "unit": batch.unit,
        "received_at": batch.received_at,
        "as_of": batch.as_of,
        "documents_reported": batch.documents_reported,
        "operations_reported": batch.operations_reported,
        "summary": {
            "state_deviations": batch.summary.state_deviations,
            "unrepaired": batch.summary.unrepaired,
            "log_deviations": batch.summary.log_deviations,
        },
        "state_deviations": states,
        "log_deviations": logs,
    })
}

async fn reconciliations(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ResultQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let results = results(&state, &scope, &query).await?;
    let gaps: Vec<Value> = results
        .gaps
        .iter()
        .map(|gap| {
            json!({
                "zjbs": gap.document,
                "sbxlh": gap.device,
                "unit": gap.unit,
                "drawer": drawer_json(&gap.drawer),
                "reason": gap.reason,
                "ywlsh": gap.serial,
                "operated_at": gap.operated_at,
            })
        })
        .collect();
    let missing: Vec<Value> = results
        .missing
        .iter()
        .map(|m| json!({"sbxlh": m.device, "date": m.business_date, "unit": m.unit}))
        .collect();
    Ok(Json(json!({
        "reconciliations": results.batches.iter().map(batch_json).collect::<Vec<_>>(),
        "inventory_gaps": gaps,
        "missing_uploads": missing,
    })))
}

// --- the CSV work list --------------------------------------------------------------------

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

fn text(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or_default()
}

/// `body/row/col`.
fn drawer_field(drawer: &DrawerRef) -> String {
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    format!(
        "{}/{}/{}",
        text(&drawer.body),
        number(drawer.row),
        number(drawer.column)
    )
}

/// A cell a spreadsheet would read as a formula (it begins with `=`, `+`, `-`, `@`, a tab or a
/// carriage return: OWASP's CSV injection rule) is prefixed with `'`, so that it shows as text.
pub(crate) fn neutralised<'a>(
    cells: impl IntoIterator<Item = &'a str>,
) -> Vec<std::borrow::Cow<'a, [u8]>> {
    cells
        .into_iter()
        .map(|cell| match cell.chars().next() {
            Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into_bytes().into(),
            _ => cell.as_bytes().into(),
        })
        .collect()
}

/// A CSV writer as every export of the read side writes: UTF-8 with a byte-order mark (so
/// that spreadsheet programs read the Chinese names as UTF-8), CRLF lines, RFC 4180 quoting.
pub(crate) fn csv_writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer("\u{feff}".as_bytes().to_vec())
}

/// A CSV body as a download named `filename`.
pub(crate) fn csv_attachment(filename: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// The work list: UTF-8 with a byte-order mark (so that spreadsheet programs read the Chinese
/// names as UTF-8), CRLF lines, RFC 4180 quoting (by the `csv` crate: a field is quoted when it
/// holds a comma, a quote or a line break).
pub(crate) fn work_list(results: &Results) -> Result<Vec<u8>, csv::Error> {
    let mut out = csv_writer();
    out.write_record(CSV_HEADER)?;
    for batch in &results.batches {
        let common = [
            batch.business_date.as_str(),
            batch.device.as_str(),
            text(&batch.serial),
        ];
        for d in &batch.state_deviations {
            let drawer = d.cabinet_drawer.as_ref().map(drawer_field);
            out.write_record(neutralised([
                "state",
                common[0],
                common[1],
                common[2],
                text(&d.document),
                text(&d.holder_name),
                text(&d.unit),
                text(&d.cabinet_state),
                text(&d.platform_state),
                text(&d.reason),
                if d.repaired { "yes" } else { "no" },
                "",
                "",
                "",
                text(&d.note),
                text(&drawer),
            ]))?;
        }
        for d in &batch.log_deviations {
            let kind = format!("log_{}", text(&d.side));
            out.write_record(neutralised([
                kind.as_str(),
                common[0],
                common[1],
                common[2],
                text(&d.document),
                "",
                text(&batch.unit),
                "",
                "",
                "",
                "",
                text(&d.serial),
                text(&d.operation),
                text(&d.operated_at),
                text(&d.note),
                "",
            ]))?;
        }
    }
    for gap in &results.gaps {
        let day: String = text(&gap.operated_at).chars().take(10).collect();
        out.write_record(neutralised([
            "inventory_gap",
            &day,
            text(&gap.device),
            "",
            text(&gap.document),
            "",
            text(&gap.unit),
            "",
            "",
            text(&gap.reason),
            "no",
            text(&gap.serial),
            "abnormal_withdrawal",
            text(&gap.operated_at),
            "",
            &drawer_field(&gap.drawer),
        ]))?;
    }
    for missing in &results.missing {
        let mut row = vec![
            "missing_upload",
            missing.business_date.as_str(),
            missing.device.as_str(),
            "",
            "",
            "",
            text(&missing.unit),
        ];
        row.resize(CSV_HEADER.len(), "");
        out.write_record(neutralised(row))?;
    }
    out.into_inner().map_err(|e| e.into_error().into())
}

async fn reconciliations_csv(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ResultQuery>,
) -> Result<Response, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let results = results(&state, &scope, &query).await?;
    let body = work_list(&results).map_err(|e| WireError::internal("CSV work list", e))?;
    Ok(csv_attachment("reconciliations.csv", body))
}

// --- alerts -------------------------------------------------------------------------------

/// The reconciliation alerts a caller sees (`GET /api/v1/alerts`): `reconciliation_missing`, a
/// cabinet that did not upload a closed business date, and `reconciliation_deviation`, a batch
/// with unrepaired state deviations or any operation-log deviation. `kind` "" means every kind.
pub async fn alerts(state: &AppState, scope: &Scope, kind: &str) -> Result<Vec<Value>, WireError> {
    let pool = state.commands.log().platform().pool();
    let subject_id = |sbxlh: &str, date: &str| format!("{sbxlh}:{}", date.replace('-', ""));
    let mut items = Vec::new();
    if kind.is_empty() || kind == "reconciliation_missing" {
        let missing = missing_uploads(pool, &ResultFilter::default())
            .await
            .map_err(view_error)?;
        for m in missing
            .iter()
            .filter(|m| scope.sees(m.unit.as_deref()))
            .take(LIMIT)
        {
            let (sbxlh, date) = (&m.device, &m.business_date);
            items.push(json!({
                "kind": "reconciliation_missing",
                "unit": m.unit,
                "subject": {"type": "Reconciliation", "id": subject_id(sbxlh, date),
                            "sbxlh": sbxlh, "date": date},
                "detail": {"sbxlh": sbxlh, "date": date},
                "raised_at": DateTime::from_timestamp_millis(m.detected_ms)
                    .map(|t| t.with_timezone(&china_standard_time()).to_rfc3339()),
            }));
        }
    }
    if kind.is_empty() || kind == "reconciliation_deviation" {
        let batches = read::with_deviations(pool, |unit| scope.sees(unit), LIMIT)
            .await
            .map_err(view_error)?;
        for batch in &batches {
            let (sbxlh, date) = (&batch.device, &batch.business_date);
            items.push(json!({
                "kind": "reconciliation_deviation",
                "unit": batch.unit,
                "subject": {"type": "Reconciliation", "id": subject_id(sbxlh, date),
                            "sbxlh": sbxlh, "date": date},
                "detail": {"dzywlsh": batch.serial,
                           "state_deviations": batch.summary.state_deviations,
                           "unrepaired": batch.summary.unrepaired,
                           "log_deviations": batch.summary.log_deviations},
                "raised_at": batch.received_at,
            }));
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_list_quotes_only_what_needs_it() {
        let results = Results {
            batches: vec![],
            gaps: vec![],
            missing: vec![MissingUpload {
                device: "SIM-1".into(),
                business_date: "2026-11-23".into(),
                unit: Some("a,\"b\"\nc".into()),
                detected_ms: 0,
            }],
        };
        let text = String::from_utf8(work_list(&results).expect("csv")).expect("UTF-8");
        assert!(text.starts_with("\u{feff}kind,date,sbxlh,"), "{text}");
        assert!(text
            .ends_with("\r\nmissing_upload,2026-11-23,SIM-1,,,,\"a,\"\"b\"\"\nc\",,,,,,,,,\r\n"));
    }

    #[test]
    fn a_cell_that_would_be_a_formula_is_text() {
        for formula in ["=HYPERLINK(\"x\")", "+1", "-1+1", "@SUM(A1)", "\tx", "\rx"] {
            let results = Results {
                batches: vec![],
                gaps: vec![],
                missing: vec![MissingUpload {
                    device: "SIM-1".into(),
                    business_date: "2026-11-23".into(),
                    unit: Some(formula.into()),
                    detected_ms: 0,
                }],
            };
            let text = String::from_utf8(work_list(&results).expect("csv")).expect("UTF-8");
            let line = text.lines().last().expect("a row");
            assert!(
                line.contains(",'") || line.contains(",\"'"),
                "{formula:?}: {line}"
            );
        }
    }
}
