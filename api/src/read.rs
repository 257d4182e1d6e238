//! The read API (SPEC §7.1): projections only, scoped to the caller's org subtree.
//!
//! Anything outside the subtree answers 404 exactly as if it did not exist. ID numbers and
//! document numbers are masked unless the token has the `pii` scope, and every answer that
//! carries unmasked personal data is written to the query audit log.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use custody_domain::cabinet::Cabinet;
use custody_domain::identifiers::mask;
use custody_projections::Projection;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::auth::{Caller, Role};
use crate::error::{ErrorCode, WireError};
use crate::server::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/documents", get(documents))
        .route("/api/v1/documents/{zjbs}", get(document))
        .route("/api/v1/persons/{rybs}", get(person))
        .route("/api/v1/cabinets/{sbxlh}", get(cabinet))
        .route("/api/v1/access-records", get(access_records))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/stats", get(stats))
}

/// What a caller may see.
pub struct Scope {
    /// The units of the caller's org subtree; None for an operator token without an org.
    units: Option<HashSet<String>>,
    pii: bool,
    caller: Caller,
}

impl Scope {
    pub async fn of(state: &AppState, caller: Caller) -> Result<Scope, WireError> {
        let units = match (&caller.org, caller.role) {
            (None, Role::Operator) => None,
            (None, _) => {
                return Err(WireError::new(ErrorCode::Forbidden, "the token has no org"));
            }
            (Some(org), _) => Some(subtree(state, org).await?),
        };
        Ok(Scope {
            units,
            pii: caller.scopes.iter().any(|s| s == "pii"),
            caller,
        })
    }

    pub fn sees(&self, unit: Option<&str>) -> bool {
        match (&self.units, unit) {
            (None, _) => true,
            (Some(units), Some(unit)) => units.contains(unit),
            (Some(_), None) => false,
        }
    }

    fn citizen_id(&self, value: Option<String>) -> Value {
        value
            .map(|v| if self.pii { v } else { mask(&v, 6, 4) })
            .map(Value::String)
            .unwrap_or(Value::Null)
    }

    fn document_number(&self, value: Option<String>) -> Value {
        value
            .map(|v| if self.pii { v } else { mask(&v, 4, 3) })
            .map(Value::String)
            .unwrap_or(Value::Null)
    }

    /// Records a read of unmasked personal data.
    pub async fn audit(
        &self,
        state: &AppState,
        path: &str,
        subjects: &[String],
    ) -> Result<(), WireError> {
        if !self.pii || subjects.is_empty() {
            return Ok(());
        }
        record_query(state, &self.caller, path, subjects).await
    }
}

/// Writes one row of the query audit log.
pub async fn record_query(
    state: &AppState,
    caller: &Caller,
    path: &str,
    subjects: &[String],
) -> Result<(), WireError> {
    sqlx::query(
        "INSERT INTO query_audit (at_ms, token_id, org, path, subjects) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(state.commands.clock().now().timestamp_millis())
    .bind(&caller.token_id)
    .bind(&caller.org)
    .bind(path)
    .bind(subjects.join(","))
    .execute(state.commands.log().platform().pool())
    .await
    .map_err(database)?;
    Ok(())
}

/// The org node and every node below it.
async fn subtree(state: &AppState, root: &str) -> Result<HashSet<String>, WireError> {
    let orgs = state.commands.log().platform().orgs().await?;
    let mut children: HashMap<String, Vec<String>> = HashMap::new();
    for org in &orgs {
        if let Some(parent) = &org.parent {
            children
                .entry(parent.clone())
                .or_default()
                .push(org.code.clone());
        }
    }
    let mut seen = HashSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(code) = stack.pop() {
        if seen.insert(code.clone()) {
            stack.extend(children.get(&code).cloned().unwrap_or_default());
        }
    }
    Ok(seen)
}

pub(crate) fn database(error: sqlx::Error) -> WireError {
    tracing::error!(%error, "view query failed");
    WireError::new(ErrorCode::Internal, "the database failed")
}

fn not_found(what: &str) -> WireError {
    WireError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// The generation of a view that readers see now.
pub(crate) async fn generation(state: &AppState, projection: Projection) -> Result<i64, WireError> {
    custody_projections::status(state.commands.log().platform().pool(), projection)
        .await
        .map(|s| s.active_generation)
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))
}

fn text(row: &AnyRow, column: &str) -> Option<String> {
    row.try_get::<Option<String>, _>(column).ok().flatten()
}

fn int(row: &AnyRow, column: &str) -> Option<i64> {
    row.try_get::<Option<i64>, _>(column).ok().flatten()
}

const DOCUMENT_COLUMNS: &str = "d.zjbs, d.zjlx, d.zjhm, d.state, d.holder_rybs, d.holder_xm, \
    d.holder_gmsfhm, COALESCE(d.unit, p.unit) AS owner, d.sbxlh, d.zjgxlh, d.drawer_row, \
    d.drawer_col, d.planned_return, d.version, d.updated_at";

/// Documents joined with their holder (a document never deposited belongs to its holder's unit).
fn documents_from(dg: i64, pg: i64) -> String {
    format!(
        "FROM view_documents d LEFT JOIN view_persons p ON p.generation = {pg} \
         AND p.rybs = d.holder_rybs WHERE d.generation = {dg}"
    )
}

fn document_json(scope: &Scope, row: &AnyRow) -> Value {
    let location = text(row, "sbxlh").map(|sbxlh| {
        json!({
            "sbxlh": sbxlh,
            "zjgxlh": text(row, "zjgxlh"),
            "row": int(row, "drawer_row"),
            "col": int(row, "drawer_col"),
        })
    });
    json!({
        "zjbs": text(row, "zjbs"),
        "zjlx": text(row, "zjlx"),
        "zjhm": scope.document_number(text(row, "zjhm")),
        "state": text(row, "state"),
        "holder": {
            "rybs": text(row, "holder_rybs"),
            "xm": text(row, "holder_xm"),
            "gmsfhm": scope.citizen_id(text(row, "holder_gmsfhm")),
        },
        "unit": text(row, "owner"),
        "location": location,
        "planned_return": text(row, "planned_return"),
        "version": int(row, "version"),
        "updated_at": text(row, "updated_at"),
    })
}

async fn document(
    State(state): State<AppState>,
    caller: Caller,
    Path(zjbs): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let (dg, pg) = (
        generation(&state, Projection::Documents).await?,
        generation(&state, Projection::Persons).await?,
    );
    let sql = format!(
        "SELECT {DOCUMENT_COLUMNS} {} AND d.zjbs = $1",
        documents_from(dg, pg)
    );
    let row = sqlx::query(&sql)
        .bind(&zjbs)
        .fetch_optional(state.commands.log().platform().pool())
        .await
        .map_err(database)?
        .filter(|row| scope.sees(text(row, "owner").as_deref()))
        .ok_or_else(|| not_found("document"))?;
    scope
        .audit(
            &state,
            &format!("/api/v1/documents/{zjbs}"),
            std::slice::from_ref(&zjbs),
        )
        .await?;
    Ok(Json(document_json(&scope, &row)))
}

#[derive(Deserialize)]
struct DocumentQuery {
    unit: Option<String>,
    state: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

/// `page` from 1, `per_page` at most 500.
fn paging(page: Option<i64>, per_page: Option<i64>) -> Result<(i64, i64), WireError> {
    let page = page.unwrap_or(1);
    let per_page = per_page.unwrap_or(50);
    if page < 1 || !(1..=500).contains(&per_page) {
        return Err(WireError::new(
            ErrorCode::InvalidField,
            "page starts at 1 and per_page is 1 to 500",
        ));
    }
    Ok((page, per_page))
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds text parameters in order.
fn bind_texts<'q>(
    mut query: AnyQuery<'q>,
    values: impl Iterator<Item = &'q String>,
) -> AnyQuery<'q> {
    for value in values {
        query = query.bind(value.as_str());
    }
    query
}

/// `AND <column> IN ('..', ..)` for a scope, with the units as bound parameters after `next`.
fn scope_filter(scope: &Scope, column: &str, next: usize) -> (String, Vec<String>) {
    match &scope.units {
        None => (String::new(), vec![]),
        Some(units) => {
            let mut units: Vec<String> = units.iter().cloned().collect();
            units.sort();
            let placeholders: Vec<String> =
                (0..units.len()).map(|i| format!("${}", next + i)).collect();
            (
                format!(" AND {column} IN ({})", placeholders.join(", ")),
                units,
            )
        }
    }
}

async fn documents(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<DocumentQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let (page, per_page) = paging(query.page, query.per_page)?;
    let (dg, pg) = (
        generation(&state, Projection::Documents).await?,
        generation(&state, Projection::Persons).await?,
    );
    let mut sql = format!(
        "{} AND ($1 = '' OR COALESCE(d.unit, p.unit) = $1) AND ($2 = '' OR d.state = $2)",
        documents_from(dg, pg)
    );
    let (filter, units) = scope_filter(&scope, "COALESCE(d.unit, p.unit)", 3);
    sql.push_str(&filter);
    let filters = [
        query.unit.clone().unwrap_or_default(),
        query.state.clone().unwrap_or_default(),
    ];
    let pool = state.commands.log().platform().pool();
    let count_sql = format!("SELECT COUNT(*) AS n {sql}");
    let total: i64 = bind_texts(sqlx::query(&count_sql), filters.iter().chain(&units))
        .fetch_one(pool)
        .await
        .map_err(database)?
        .try_get("n")
        .map_err(database)?;
    let page_sql = format!(
        "SELECT {DOCUMENT_COLUMNS} {sql} ORDER BY d.zjbs LIMIT {per_page} OFFSET {}",
        (page - 1) * per_page
    );
    let rows = bind_texts(sqlx::query(&page_sql), filters.iter().chain(&units))
        .fetch_all(pool)
        .await
        .map_err(database)?;
    let items: Vec<Value> = rows.iter().map(|row| document_json(&scope, row)).collect();
    let subjects: Vec<String> = rows.iter().filter_map(|r| text(r, "zjbs")).collect();
    scope.audit(&state, "/api/v1/documents", &subjects).await?;
    Ok(Json(json!({
        "documents": items,
        "page": page,
        "per_page": per_page,
        "total": total,
    })))
}

async fn person(
    State(state): State<AppState>,
    caller: Caller,
    Path(rybs): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let pool = state.commands.log().platform().pool();
    let pg = generation(&state, Projection::Persons).await?;
    let row = sqlx::query(
        "SELECT rybs, xm, gmsfhm, state, unit FROM view_persons WHERE generation = $1 AND rybs = $2",
    )
    .bind(pg)
    .bind(&rybs)
    .fetch_optional(pool)
    .await
    .map_err(database)?
    .filter(|row| scope.sees(text(row, "unit").as_deref()))
    .ok_or_else(|| not_found("person"))?;
    let dg = generation(&state, Projection::Documents).await?;
    let documents: Vec<String> = sqlx::query(
        "SELECT zjbs FROM view_documents WHERE generation = $1 AND holder_rybs = $2 ORDER BY zjbs",
    )
    .bind(dg)
    .bind(&rybs)
    .fetch_all(pool)
    .await
    .map_err(database)?
    .iter()
    .filter_map(|r| text(r, "zjbs"))
    .collect();
    scope
        .audit(
            &state,
            &format!("/api/v1/persons/{rybs}"),
            std::slice::from_ref(&rybs),
        )
        .await?;
    Ok(Json(json!({
        "rybs": text(&row, "rybs"),
        "xm": text(&row, "xm"),
        "gmsfhm": scope.citizen_id(text(&row, "gmsfhm")),
        "state": text(&row, "state"),
        "unit": text(&row, "unit"),
        "documents": documents,
    })))
}

async fn cabinet(
    State(state): State<AppState>,
    caller: Caller,
    Path(sbxlh): Path<String>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let pool = state.commands.log().platform().pool();
    let cg = generation(&state, Projection::Cabinets).await?;
    let row = sqlx::query(
        "SELECT aggregate, state, unit FROM view_cabinets WHERE generation = $1 AND sbxlh = $2",
    )
    .bind(cg)
    .bind(&sbxlh)
    .fetch_optional(pool)
    .await
    .map_err(database)?
    .filter(|row| scope.sees(text(row, "unit").as_deref()))
    .ok_or_else(|| not_found("cabinet"))?;
    let aggregate: Cabinet = text(&row, "aggregate")
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or_default();
    let dg = generation(&state, Projection::Documents).await?;
    let mut occupants: HashMap<(String, i64, i64), Vec<String>> = HashMap::new();
    for doc in sqlx::query(
        "SELECT zjbs, zjgxlh, drawer_row, drawer_col FROM view_documents \
         WHERE generation = $1 AND sbxlh = $2 AND state = 'InCabinet' ORDER BY zjbs",
    )
    .bind(dg)
    .bind(&sbxlh)
    .fetch_all(pool)
    .await
    .map_err(database)?
    {
        if let (Some(body), Some(r), Some(c), Some(zjbs)) = (
            text(&doc, "zjgxlh"),
            int(&doc, "drawer_row"),
            int(&doc, "drawer_col"),
            text(&doc, "zjbs"),
        ) {
            occupants.entry((body, r, c)).or_default().push(zjbs);
        }
    }
    let bodies: Vec<Value> = aggregate
        .bodies
        .iter()
        .map(|body| {
            let mut drawers = Vec::new();
            for r in 1..=i64::from(body.rows) {
                for c in 1..=i64::from(body.columns) {
                    let documents = occupants
                        .get(&(body.serial.clone(), r, c))
                        .cloned()
                        .unwrap_or_default();
                    drawers.push(json!({"row": r, "col": c, "documents": documents}));
                }
            }
            json!({"zjgxlh": body.serial, "rows": body.rows, "cols": body.columns, "drawers": drawers})
        })
        .collect();
    let last_heartbeat = state
        .commands
        .log()
        .platform()
        .heartbeat(&sbxlh)
        .await?
        .and_then(|(ms, status)| {
            let at = chrono::DateTime::from_timestamp_millis(ms)?
                .with_timezone(&custody_domain::values::china_standard_time());
            Some(json!({"at": at.to_rfc3339(), "status": serde_json::from_str::<Value>(&status).ok()}))
        });
    Ok(Json(json!({
        "sbxlh": sbxlh,
        "unit": text(&row, "unit"),
        "state": text(&row, "state"),
        "cabinets": bodies,
        "last_heartbeat": last_heartbeat,
    })))
}

#[derive(Deserialize)]
struct AccessQuery {
    zjbs: Option<String>,
    sbxlh: Option<String>,
    from: Option<String>,
    to: Option<String>,
    page: Option<i64>,
    per_page: Option<i64>,
}

fn millis(field: &str, value: &Option<String>, default: i64) -> Result<i64, WireError> {
    match value {
        None => Ok(default),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|_| {
                WireError::new(ErrorCode::InvalidField, format!("{field} is not RFC 3339"))
            }),
    }
}

async fn access_records(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AccessQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let (page, per_page) = paging(query.page, query.per_page)?;
    let ag = generation(&state, Projection::AccessRecords).await?;
    let (from, to) = (
        millis("from", &query.from, i64::MIN)?,
        millis("to", &query.to, i64::MAX)?,
    );
    let (filter, units) = scope_filter(&scope, "unit", 6);
    let sql = format!(
        "SELECT zjbs, sequence, kind, unit, sbxlh, zjgxlh, drawer_row, drawer_col, ywlsh, \
         operated_at, destination, planned_return, anomaly FROM view_access_records \
         WHERE generation = $1 AND ($2 = '' OR zjbs = $2) AND ($3 = '' OR sbxlh = $3) \
         AND operated_ms >= $4 AND operated_ms <= $5{filter} \
         ORDER BY operated_ms DESC, zjbs, sequence DESC LIMIT {per_page} OFFSET {}",
        (page - 1) * per_page
    );
    let mut q = sqlx::query(&sql)
        .bind(ag)
        .bind(query.zjbs.clone().unwrap_or_default())
        .bind(query.sbxlh.clone().unwrap_or_default())
        .bind(from)
        .bind(to);
    for unit in units {
        q = q.bind(unit);
    }
    let rows = q
        .fetch_all(state.commands.log().platform().pool())
        .await
        .map_err(database)?;
    let records: Vec<Value> = rows
        .iter()
        .map(|row| {
            json!({
                "zjbs": text(row, "zjbs"),
                "sequence": int(row, "sequence"),
                "kind": text(row, "kind"),
                "unit": text(row, "unit"),
                "sbxlh": text(row, "sbxlh"),
                "zjgxlh": text(row, "zjgxlh"),
                "row": int(row, "drawer_row"),
                "col": int(row, "drawer_col"),
                "ywlsh": text(row, "ywlsh"),
                "operated_at": text(row, "operated_at"),
                "destination": text(row, "destination"),
                "planned_return": text(row, "planned_return"),
                "anomaly": text(row, "anomaly"),
            })
        })
        .collect();
    Ok(Json(
        json!({"access_records": records, "page": page, "per_page": per_page}),
    ))
}

#[derive(Deserialize)]
struct AlertQuery {
    kind: Option<String>,
}

async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let pool = state.commands.log().platform().pool();
    let (alg, dg, cg) = (
        generation(&state, Projection::Alerts).await?,
        generation(&state, Projection::Documents).await?,
        generation(&state, Projection::Cabinets).await?,
    );
    let kind = query.kind.clone().unwrap_or_default();
    let (filter, units) = scope_filter(&scope, "COALESCE(a.unit, d.unit, c.unit)", 2);
    let sql = format!(
        "SELECT a.kind, a.aggregate_type, a.aggregate_id, a.sequence, a.detail, a.raised_at, \
         COALESCE(a.unit, d.unit, c.unit) AS owner FROM view_alerts a \
         LEFT JOIN view_documents d ON d.generation = {dg} AND a.aggregate_type = 'Document' \
         AND d.zjbs = a.aggregate_id \
         LEFT JOIN view_cabinets c ON c.generation = {cg} AND a.aggregate_type = 'Cabinet' \
         AND c.sbxlh = a.aggregate_id \
         WHERE a.generation = {alg} AND ($1 = '' OR a.kind = $1){filter} \
         ORDER BY a.raised_ms DESC LIMIT 500"
    );
    let mut q = sqlx::query(&sql).bind(kind.clone());
    for unit in units {
        q = q.bind(unit);
    }
    let mut items: Vec<Value> = q
        .fetch_all(pool)
        .await
        .map_err(database)?
        .iter()
        .map(|row| {
            json!({
                "kind": text(row, "kind"),
                "unit": text(row, "owner"),
                "subject": {"type": text(row, "aggregate_type"), "id": text(row, "aggregate_id"),
                            "sequence": int(row, "sequence")},
                "detail": text(row, "detail").and_then(|d| serde_json::from_str::<Value>(&d).ok()),
                "raised_at": text(row, "raised_at"),
            })
        })
        .collect();
    if kind.is_empty() || kind == "rejected_report" {
        // Rejected reports of cabinets in the caller's subtree.
        let units_of_cabinets: HashMap<String, Option<String>> =
            sqlx::query("SELECT sbxlh, unit FROM view_cabinets WHERE generation = $1")
                .bind(cg)
                .fetch_all(pool)
                .await
                .map_err(database)?
                .iter()
                .filter_map(|row| Some((text(row, "sbxlh")?, text(row, "unit"))))
                .collect();
        for rejection in state
            .commands
            .log()
            .platform()
            .rejections(500, None)
            .await?
        {
            // A custody refusal concerns the unit whose document or person was touched as
            // much as the sender's: the readers of both see it (docs/custody.md).
            let senders_unit = units_of_cabinets.get(&rejection.ei).cloned().flatten();
            let unit = match &rejection.touched_unit {
                Some(touched) if scope.sees(Some(touched)) => Some(touched.clone()),
                _ => senders_unit,
            };
            if !scope.sees(unit.as_deref()) {
                continue;
            }
            items.push(json!({
                "kind": "rejected_report",
                "unit": unit,
                "subject": {"type": "Report", "id": rejection.id, "ei": rejection.ei, "ywlsh": rejection.ywlsh},
                "detail": {"mstype": rejection.mstype, "error_code": rejection.error_code,
                           "error_msg": rejection.error_message},
                "raised_at": chrono::DateTime::from_timestamp_millis(rejection.received_ms)
                    .map(|t| t.with_timezone(&custody_domain::values::china_standard_time()).to_rfc3339()),
            }));
        }
    }
    // Reconciliation alerts (missing uploads, unrepaired deviations): api/src/reconciliations.rs.
    items.extend(crate::reconciliations::alerts(&state, &scope, &kind).await?);
    Ok(Json(json!({"alerts": items})))
}

async fn stats(State(state): State<AppState>, caller: Caller) -> Result<Json<Value>, WireError> {
    let scope = Scope::of(&state, caller).await?;
    let pool = state.commands.log().platform().pool();
    let (dg, pg, ag) = (
        generation(&state, Projection::Documents).await?,
        generation(&state, Projection::Persons).await?,
        generation(&state, Projection::AccessRecords).await?,
    );
    let (filter, units) = scope_filter(&scope, "COALESCE(d.unit, p.unit)", 1);
    let sql = format!(
        "SELECT d.state, d.planned_return {} {filter}",
        documents_from(dg, pg)
    );
    let mut q = sqlx::query(&sql);
    for unit in &units {
        q = q.bind(unit.clone());
    }
    let today = state.commands.clock().now().date_naive().to_string();
    let mut by_state: HashMap<String, i64> = HashMap::new();
    let mut overdue = 0;
    for row in q.fetch_all(pool).await.map_err(database)? {
        let document_state = text(&row, "state").unwrap_or_default();
        if document_state == "AwaitingReturn"
            && text(&row, "planned_return").is_some_and(|d| d < today)
        {
            overdue += 1;
        }
        *by_state.entry(document_state).or_default() += 1;
    }
    let (filter, units) = scope_filter(&scope, "unit", 2);
    let sql = format!(
        "SELECT kind, operated_at, destination FROM view_access_records \
         WHERE generation = $1{filter}"
    );
    let mut q = sqlx::query(&sql).bind(ag);
    for unit in units {
        q = q.bind(unit);
    }
    let mut per_day: HashMap<String, i64> = HashMap::new();
    let mut destinations: HashMap<String, i64> = HashMap::new();
    for row in q.fetch_all(pool).await.map_err(database)? {
        let kind = text(&row, "kind").unwrap_or_default();
        if matches!(kind.as_str(), "lend" | "take_out" | "abnormal_withdrawal") {
            let day: String = text(&row, "operated_at")
                .unwrap_or_default()
                .chars()
                .take(10)
                .collect();
            *per_day.entry(day).or_default() += 1;
            if let Some(destination) = text(&row, "destination") {
                *destinations.entry(destination).or_default() += 1;
            }
        }
    }
    Ok(Json(json!({
        "documents_by_state": by_state,
        "withdrawals_per_day": per_day,
        "destinations": destinations,
        "overdue": overdue,
    })))
}
