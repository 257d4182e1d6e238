//! The views: each parses its query, calls the readers the read API calls for the same
//! numbers, and renders them (or their CSV).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration, NaiveDate};
use custody_domain::document::{
    Anomaly, CrossingDirection, DepositKind, DocumentEvent, DocumentState, WithdrawalKind,
};
use custody_domain::reminder::china_date;
use custody_domain::transitions::Named;
use custody_domain::values::china_standard_time;
use custody_eventlog::StoredEvent;
use maud::html;
use serde::Deserialize;
use serde_json::Value;

use super::{chart, csv, csv_link, page, table, UiError, Viewer};
use crate::error::{ErrorCode, WireError};
use crate::overdue::{open_overdue, OverdueQuery};
use crate::read::{alert_items, china_time, reader};
use crate::reconciliations::{results, work_list, ResultQuery};
use crate::scope::Scope;
use crate::state::AppState;

/// Days of withdrawals the overview charts.
const DAYS: i64 = 90;

/// Holders listed on the destinations page, most frequent first.
const PERSONS_SHOWN: usize = 100;

/// A document state's Chinese name.
fn state_name(state: &str) -> &'static str {
    match state {
        "Applying" => "办证中",
        "InCabinet" => "已入柜",
        "Withdrawn" => "已取证",
        "AwaitingReturn" => "等待入柜",
        "Cancelled" => "已注销",
        _ => "未知",
    }
}

/// The states of a document out of the cabinet now (taken out, due back or not).
const OUT: [DocumentState; 2] = [DocumentState::Withdrawn, DocumentState::AwaitingReturn];

fn text(value: Value) -> String {
    value.as_str().map(str::to_string).unwrap_or_default()
}

fn opt(value: Option<&str>) -> String {
    value.unwrap_or_default().to_string()
}

/// The CSV handler of a list view: the same rows as the page, for the same viewer.
macro_rules! csv_of_list {
    ($handler:ident, $rows:ident, $file:literal, $header:ident) => {
        pub async fn $handler(
            State(state): State<AppState>,
            viewer: Viewer,
        ) -> Result<Response, UiError> {
            let rows = $rows(&state, &viewer.scope).await?;
            csv($file, &$header, &rows)
        }
    };
}

// --- overview -----------------------------------------------------------------------------

struct Overview {
    by_state: Vec<(String, i64)>,
    total: i64,
    out: i64,
    overdue: i64,
    open_alerts: usize,
    per_day: Vec<(String, i64)>,
}

async fn overview_of(state: &AppState, scope: &Scope) -> Result<Overview, UiError> {
    let today = china_date(state.commands.clock().now());
    let stats = reader(state).stats(scope.units(), today).await?;
    let per_day = (0..DAYS)
        .rev()
        .map(|back| {
            let day = (today - Duration::days(back)).to_string();
            let n = stats.withdrawals_per_day.get(&day).copied().unwrap_or(0);
            (day, n)
        })
        .collect();
    let out = OUT
        .iter()
        .filter_map(|s| stats.documents_by_state.get(s.name()))
        .sum();
    Ok(Overview {
        total: stats.documents_by_state.values().sum(),
        by_state: stats.documents_by_state.into_iter().collect(),
        out,
        overdue: stats.overdue,
        open_alerts: alert_items(state, scope, "").await?.len(),
        per_day,
    })
}

pub async fn overview(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let o = overview_of(&state, &viewer.scope).await?;
    let states: Vec<(String, i64)> = o
        .by_state
        .iter()
        .map(|(s, n)| (state_name(s).to_string(), *n))
        .collect();
    let content = html! {
        section aria-labelledby="now" {
            h2 #now { "当前" }
            dl.cards {
                div { dt { "证件总数" } dd data-stat="total" { (o.total) } }
                div { dt { "柜外（已取证、等待入柜）" } dd data-stat="out" { (o.out) } }
                div { dt { "逾期未还" } dd data-stat="overdue" { a href="/ui/overdue" { (o.overdue) } } }
                div { dt { "告警" } dd data-stat="alerts" { a href="/ui/alerts" { (o.open_alerts) } } }
            }
        }
        section aria-labelledby="by-state" {
            h2 #by-state { "按状态" }
            (chart::ranked("chart-states", "证件按状态", &states))
            table #states {
                caption { "证件按状态" }
                thead { tr { th scope="col" { "状态" } th scope="col" { "数量" } } }
                tbody {
                    @for (s, n) in &o.by_state {
                        tr { td { (state_name(s)) } td data-state=(s) { (n) } }
                    }
                }
            }
        }
        section aria-labelledby="per-day" {
            h2 #per-day { "近 " (DAYS) " 天每日出柜" }
            (chart::columns("chart-withdrawals", "每日出柜次数（借出、取出、异常出柜）", &o.per_day))
        }
        (csv_link("/ui/overview.csv"))
    };
    Ok(page(&viewer, "/ui/", "概览", content))
}

pub async fn overview_csv(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, UiError> {
    let o = overview_of(&state, &viewer.scope).await?;
    let mut rows = vec![
        vec!["total".into(), String::new(), o.total.to_string()],
        vec!["out".into(), String::new(), o.out.to_string()],
        vec!["overdue".into(), String::new(), o.overdue.to_string()],
        vec!["alerts".into(), String::new(), o.open_alerts.to_string()],
    ];
    rows.extend(
        o.by_state
            .iter()
            .map(|(s, n)| vec!["state".into(), s.clone(), n.to_string()]),
    );
    rows.extend(
        o.per_day
            .iter()
            .map(|(d, n)| vec!["withdrawals".into(), d.clone(), n.to_string()]),
    );
    csv("overview.csv", &["metric", "key", "value"], &rows)
}

// --- destinations -------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct Period {
    from: Option<String>,
    to: Option<String>,
}

impl Period {
    fn date(field: &str, value: &Option<String>) -> Result<Option<NaiveDate>, UiError> {
        match value.as_deref().filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| {
                    WireError::new(
                        ErrorCode::InvalidField,
                        format!("{field} 不是 YYYY-MM-DD 日期"),
                    )
                    .into()
                }),
        }
    }

    /// The period's China-time days, both inclusive (None: unbounded).
    fn days(&self) -> Result<(Option<NaiveDate>, Option<NaiveDate>), UiError> {
        Ok((Self::date("from", &self.from)?, Self::date("to", &self.to)?))
    }
}

/// The destinations in `period`, with the `persons` most frequent holders (None: all).
async fn destinations_of(
    state: &AppState,
    scope: &Scope,
    period: &Period,
    persons: Option<usize>,
) -> Result<custody_projections::read::Destinations, UiError> {
    let (from, to) = period.days()?;
    Ok(reader(state)
        .destinations(scope.units(), from, to, persons)
        .await?)
}

fn person_rows(d: &custody_projections::read::Destinations) -> Vec<Vec<String>> {
    d.by_person
        .iter()
        .map(|p| {
            vec![
                p.holder.clone(),
                opt(p.name.as_deref()),
                p.withdrawals.to_string(),
                p.destinations.join("、"),
            ]
        })
        .collect()
}

pub async fn destinations(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Result<Response, UiError> {
    let d = destinations_of(&state, &viewer.scope, &period, Some(PERSONS_SHOWN)).await?;
    let query = format!(
        "from={}&to={}",
        opt(period.from.as_deref()),
        opt(period.to.as_deref())
    );
    let ranked: Vec<Vec<String>> = d
        .by_destination
        .iter()
        .enumerate()
        .map(|(i, (place, n))| vec![(i + 1).to_string(), place.clone(), n.to_string()])
        .collect();
    // The page shows the most frequent holders; the CSV has them all.
    let persons = person_rows(&d);
    let content = html! {
        form.filter method="get" action="/ui/destinations" {
            label for="from" { "起始日期" }
            input #from type="date" name="from" value=(opt(period.from.as_deref()));
            label for="to" { "截止日期" }
            input #to type="date" name="to" value=(opt(period.to.as_deref()));
            button type="submit" { "筛选" }
        }
        p.note { "按出柜（借出、取出）登记的目的地统计；日期为北京时间。" }
        (chart::ranked("chart-destinations", "目的地排名（出柜次数）", &d.by_destination))
        (table("destinations", "目的地排名", &["名次", "目的地", "出柜次数"], &ranked))
        (table("persons", &format!("人员出行频次（前 {PERSONS_SHOWN} 名，全部见 CSV）"),
            &["人员标识", "姓名", "出柜次数", "目的地"], &persons))
        (csv_link(&format!("/ui/destinations.csv?{query}")))
    };
    Ok(page(&viewer, "/ui/destinations", "去向统计", content))
}

pub async fn destinations_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Result<Response, UiError> {
    let d = destinations_of(&state, &viewer.scope, &period, None).await?;
    let mut rows: Vec<Vec<String>> = d
        .by_destination
        .iter()
        .map(|(place, n)| {
            vec![
                "destination".into(),
                place.clone(),
                String::new(),
                n.to_string(),
            ]
        })
        .collect();
    rows.extend(person_rows(&d).into_iter().map(|p| {
        vec![
            "person".into(),
            p[3].clone(),
            format!("{} {}", p[0], p[1]),
            p[2].clone(),
        ]
    }));
    csv(
        "destinations.csv",
        &["kind", "destination", "person", "withdrawals"],
        &rows,
    )
}

// --- overdue ------------------------------------------------------------------------------

const OVERDUE_HEADER: [&str; 10] = [
    "证件标识",
    "持证人标识",
    "单位",
    "证件柜",
    "应还日期",
    "逾期天数",
    "提醒类型",
    "提醒状态",
    "已提醒次数",
    "最近提醒",
];

async fn overdue_rows(state: &AppState, scope: &Scope) -> Result<Vec<Vec<String>>, UiError> {
    let (today, open) = open_overdue(state, scope, &OverdueQuery::default()).await?;
    Ok(open
        .iter()
        .map(|r| {
            let d = &r.details;
            vec![
                d.document.as_str().to_string(),
                opt(d.holder.as_ref().map(|h| h.as_str())),
                opt(d.unit.as_ref().map(|u| u.as_str())),
                opt(d.device.as_ref().map(|s| s.as_str())),
                d.planned_return.map(|p| p.to_string()).unwrap_or_default(),
                r.overdue_days(today).to_string(),
                match d.kind.code() {
                    "overdue" => "逾期".to_string(),
                    "entered" => "已入境未还".to_string(),
                    other => other.to_string(),
                },
                r.state.to_string(),
                r.sent.to_string(),
                r.last_sent_at.map(|t| moment(&t)).unwrap_or_default(),
            ]
        })
        .collect())
}

pub async fn overdue(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let rows = overdue_rows(&state, &viewer.scope).await?;
    let content = html! {
        p.note { "逾期天数 = 今天（北京时间）− 应还日期。点击证件标识查看其全部记录。" }
        table #overdue {
            caption { "逾期未还与提醒（" (rows.len()) " 条）" }
            thead { tr { @for h in OVERDUE_HEADER { th scope="col" { (h) } } } }
            tbody {
                @for row in &rows {
                    tr {
                        td { a href=(format!("/ui/documents/{}", row[0])) { (row[0]) } }
                        @for cell in &row[1..] { td { (cell) } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="10" { "无" } } }
            }
        }
        (csv_link("/ui/overdue.csv"))
    };
    Ok(page(&viewer, "/ui/overdue", "逾期未还", content))
}

csv_of_list!(overdue_csv, overdue_rows, "overdue.csv", OVERDUE_HEADER);

// --- search and a document's timeline -----------------------------------------------------

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    q: Option<String>,
}

pub async fn search(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> Result<Response, UiError> {
    let q = query.q.unwrap_or_default().trim().to_string();
    let form = html! {
        form.filter method="get" action="/ui/search" role="search" {
            label for="q" { "证件号码、公民身份号码、证件标识或人员标识" }
            input #q type="search" name="q" value=(q) required;
            button type="submit" { "查询" }
        }
    };
    if q.is_empty() {
        return Ok(page(&viewer, "/ui/search", "人员与证件查询", form));
    }
    let scope = &viewer.scope;
    if reader(&state).document(scope.units(), &q).await?.is_some() {
        return Ok(Redirect::to(&format!("/ui/documents/{}", urlencode(&q))).into_response());
    }
    // A citizen ID number or a document number, looked up by its blind index
    // (docs/personal-data.md): one person or document found is shown at once.
    let mut q = q;
    if let Ok(citizen_id) = q.parse::<custody_domain::identifiers::CitizenId>() {
        let found = reader(&state)
            .persons_by_citizen_id(scope.units(), &citizen_id.to_string())
            .await?;
        if let [rybs] = found.as_slice() {
            q = rybs.clone();
        }
    } else if let Ok(number) = q.parse::<custody_domain::identifiers::DocumentNumber>() {
        let filter = custody_projections::read::DocumentFilter {
            number: Some(number.to_string()),
            ..Default::default()
        };
        let page = custody_projections::read::Page { number: 1, size: 2 };
        let found = reader(&state)
            .documents(scope.units(), &filter, page)
            .await?;
        if let [document] = found.documents.as_slice() {
            return Ok(
                Redirect::to(&format!("/ui/documents/{}", urlencode(&document.id))).into_response(),
            );
        }
    }
    let person = reader(&state).person(scope.units(), &q).await?;
    if let Some(person) = &person {
        scope
            .audit(
                &state,
                &format!("/ui/search?q={q}"),
                std::slice::from_ref(&person.id),
            )
            .await?;
    }
    let content = html! {
        (form)
        @match &person {
            None => p role="status" #not-found { "未找到：" (q) },
            Some(p) => section aria-labelledby="person" {
                h2 #person { "人员 " (p.id) }
                dl.fields {
                    dt { "姓名" } dd { (opt(p.name.as_deref())) }
                    dt { "公民身份号码" } dd #citizen-id { (text(scope.citizen_id(p.citizen_id.as_deref()))) }
                    dt { "状态" } dd { (p.status.name()) }
                    dt { "单位" } dd { (opt(p.unit.as_deref())) }
                }
                h3 { "证件" }
                ul #person-documents {
                    @for d in &p.documents {
                        li { a href=(format!("/ui/documents/{}", urlencode(d))) { (d) } }
                    }
                }
            },
        }
    };
    Ok(page(&viewer, "/ui/search", "人员与证件查询", content))
}

/// Percent-encodes a path segment (identifiers are ASCII letters and digits; anything else is
/// encoded).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One line of a document's timeline: when, what, where and how.
struct Line {
    sequence: i64,
    at: String,
    what: String,
    detail: String,
}

/// A moment as China time, to the second.
fn moment(at: &chrono::DateTime<chrono::FixedOffset>) -> String {
    at.with_timezone(&china_standard_time())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn anomaly(a: Option<Anomaly>) -> String {
    match a {
        None => String::new(),
        Some(Anomaly::ExitWhileInCabinet) => "；异常：证件在柜时出境".into(),
        Some(Anomaly::CrossingOfUnknownDocument) => "；异常：未登记证件出入境".into(),
        Some(Anomaly::WithdrawalWithoutApproval) => "；异常：无出国（境）审批出柜".into(),
    }
}

fn location(l: &custody_domain::values::Location) -> String {
    format!(
        "证件柜 {} 柜体 {} 第 {} 行第 {} 列（单位 {}）",
        l.device.as_str(),
        l.drawer.body,
        l.drawer.row,
        l.drawer.column,
        l.unit.as_str()
    )
}

fn line(scope: &Scope, event: &StoredEvent) -> Line {
    let recorded = event
        .metadata
        .get("recorded_at")
        .and_then(Value::as_str)
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| moment(&t))
                .unwrap_or_else(|_| t.to_string())
        })
        .unwrap_or_default();
    let parsed = serde_json::from_value::<DocumentEvent>(event.payload.clone());
    let (at, what, detail) = match parsed {
        Err(_) => (recorded, event.event_type.clone(), String::new()),
        Ok(DocumentEvent::ApplicationFiled(e)) => (
            recorded,
            "办证申请".into(),
            format!(
                "持证人 {}，证件类型 {}",
                e.holder.as_str(),
                e.document_type.code()
            ),
        ),
        Ok(DocumentEvent::IssuanceConfirmed(e)) => (
            recorded,
            "已办证".into(),
            format!(
                "证件号码 {}，签发 {}，有效期至 {}",
                text(scope.document_number(e.number.known().map(|n| n.as_str()))),
                e.issued_on,
                e.valid_until
            ),
        ),
        Ok(DocumentEvent::Deposited(e)) => (
            moment(&e.operated_at),
            match e.kind {
                DepositKind::New => "入柜（新证）".into(),
                DepositKind::Return => "入柜（归还）".into(),
            },
            location(&e.location),
        ),
        Ok(DocumentEvent::Withdrawn(e)) => (
            moment(&e.operated_at),
            match e.kind {
                WithdrawalKind::Lend => "出柜（借出）".into(),
                WithdrawalKind::TakeOut => "出柜（取出）".into(),
            },
            format!(
                "{}；目的地 {}；事由 {}；应还 {}；出国（境）审批 {}{}",
                location(&e.location),
                opt(e.destination.as_deref()),
                e.purpose
                    .as_deref()
                    .filter(|p| !p.is_empty())
                    .unwrap_or("无"),
                e.planned_return.map(|d| d.to_string()).unwrap_or_default(),
                e.travel_approval.as_deref().unwrap_or("无"),
                anomaly(e.anomaly)
            ),
        ),
        Ok(DocumentEvent::AbnormalWithdrawal(e)) => (
            moment(&e.operated_at),
            "异常出柜".into(),
            format!("{}；原因 {:?}", location(&e.location), e.reason),
        ),
        Ok(DocumentEvent::BorderCrossed(e)) => (
            moment(&e.crossed_at),
            match e.direction {
                CrossingDirection::Exit => "出境".into(),
                CrossingDirection::Entry => "入境".into(),
            },
            format!(
                "口岸 {}；国家（地区） {}{}",
                e.port,
                e.country,
                anomaly(e.anomaly)
            ),
        ),
        Ok(DocumentEvent::ReturnDateReached(e)) => (
            recorded,
            "已到归还日期".into(),
            format!("应还 {}", e.planned_return),
        ),
        Ok(DocumentEvent::Cancelled(e)) => {
            (recorded, "注销".into(), format!("原因 {:?}", e.reason))
        }
        Ok(DocumentEvent::ReconciliationCorrected(e)) => (
            recorded,
            "对账更正".into(),
            format!(
                "对账流水 {}；{}",
                e.reconciliation_serial,
                location(&e.location)
            ),
        ),
    };
    Line {
        sequence: event.sequence,
        at,
        what,
        detail,
    }
}

struct Timeline {
    document: custody_projections::read::DocumentRow,
    lines: Vec<Line>,
}

async fn timeline_of(state: &AppState, scope: &Scope, zjbs: &str) -> Result<Timeline, UiError> {
    let document = reader(state)
        .document(scope.units(), zjbs)
        .await?
        .ok_or_else(|| WireError::new(ErrorCode::NotFound, "没有这个证件"))?;
    let events = state
        .commands
        .log()
        .opened_events_of("Document", zjbs)
        .await?;
    scope
        .audit(state, &format!("/ui/documents/{zjbs}"), &[zjbs.to_string()])
        .await?;
    Ok(Timeline {
        document,
        lines: events.iter().map(|e| line(scope, e)).collect(),
    })
}

const TIMELINE_HEADER: [&str; 4] = ["序号", "时间", "事件", "详情"];

fn timeline_rows(t: &Timeline) -> Vec<Vec<String>> {
    t.lines
        .iter()
        .map(|l| {
            vec![
                l.sequence.to_string(),
                l.at.clone(),
                l.what.clone(),
                l.detail.clone(),
            ]
        })
        .collect()
}

pub async fn document(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(zjbs): Path<String>,
) -> Result<Response, UiError> {
    let scope = &viewer.scope;
    let t = timeline_of(&state, scope, &zjbs).await?;
    let d = &t.document;
    let content = html! {
        dl.fields #document {
            dt { "证件类型" } dd { (opt(d.document_type.as_deref())) }
            dt { "证件号码" } dd #document-number { (text(scope.document_number(d.number.as_deref()))) }
            dt { "状态" } dd #document-state data-state=(d.state.name()) { (state_name(d.state.name())) }
            dt { "持证人" } dd {
                @if let Some(holder) = &d.holder.id {
                    a href=(format!("/ui/search?q={}", urlencode(holder))) { (holder) }
                }
                " " (opt(d.holder.name.as_deref()))
            }
            dt { "公民身份号码" } dd #citizen-id { (text(scope.citizen_id(d.holder.citizen_id.as_deref()))) }
            dt { "单位" } dd { (opt(d.unit.as_deref())) }
            dt { "位置" } dd {
                @match &d.location {
                    Some(l) => { "证件柜 " (l.device) " 柜体 " (opt(l.body.as_deref())) " 第 "
                        (l.row.map(|r| r.to_string()).unwrap_or_default()) " 行第 "
                        (l.column.map(|c| c.to_string()).unwrap_or_default()) " 列" },
                    None => "不在柜中",
                }
            }
            dt { "应还日期" } dd { (opt(d.planned_return.as_deref())) }
        }
        (table("timeline", "全部记录", &TIMELINE_HEADER, &timeline_rows(&t)))
        (csv_link(&format!("/ui/documents/{}/timeline.csv", urlencode(&zjbs))))
    };
    Ok(page(
        &viewer,
        "/ui/search",
        &format!("证件 {zjbs}"),
        content,
    ))
}

pub async fn timeline_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(zjbs): Path<String>,
) -> Result<Response, UiError> {
    let t = timeline_of(&state, &viewer.scope, &zjbs).await?;
    csv("timeline.csv", &TIMELINE_HEADER, &timeline_rows(&t))
}

// --- cabinets -----------------------------------------------------------------------------

const CABINET_HEADER: [&str; 7] = [
    "证件柜",
    "单位",
    "状态",
    "抽屉数",
    "有证抽屉",
    "在柜证件",
    "最近心跳",
];

async fn cabinet_rows(state: &AppState, scope: &Scope) -> Result<Vec<Vec<String>>, UiError> {
    let mut rows = Vec::new();
    for c in reader(state).cabinet_summaries(scope.units()).await? {
        rows.push(vec![
            c.device,
            opt(c.unit.as_deref()),
            c.state.name().to_string(),
            c.drawers.to_string(),
            c.occupied.to_string(),
            c.documents.to_string(),
            c.last_heartbeat_ms
                .and_then(china_time)
                .unwrap_or_else(|| "无".into()),
        ]);
    }
    Ok(rows)
}

pub async fn cabinets(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let rows = cabinet_rows(&state, &viewer.scope).await?;
    let content = html! {
        (table("cabinets", "证件柜与抽屉占用", &CABINET_HEADER, &rows))
        (csv_link("/ui/cabinets.csv"))
    };
    Ok(page(&viewer, "/ui/cabinets", "证件柜", content))
}

csv_of_list!(cabinets_csv, cabinet_rows, "cabinets.csv", CABINET_HEADER);

// --- reconciliations ----------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct DateQuery {
    date: Option<String>,
}

pub async fn reconciliations(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DateQuery>,
) -> Result<Response, UiError> {
    let query = ResultQuery {
        date: query.date,
        sbxlh: None,
    };
    let r = results(&state, &viewer.scope, &query).await?;
    let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let batches: Vec<Vec<String>> = r
        .batches
        .iter()
        .map(|b| {
            vec![
                b.business_date.clone(),
                b.device.clone(),
                opt(b.serial.as_deref()),
                n(b.documents_reported),
                n(b.operations_reported),
                n(b.summary.state_deviations),
                n(b.summary.unrepaired),
                n(b.summary.log_deviations),
            ]
        })
        .collect();
    let missing: Vec<Vec<String>> = r
        .missing
        .iter()
        .map(|m| {
            vec![
                m.business_date.clone(),
                m.device.clone(),
                opt(m.unit.as_deref()),
            ]
        })
        .collect();
    let gaps: Vec<Vec<String>> = r
        .gaps
        .iter()
        .map(|g| {
            vec![
                opt(g.operated_at.as_deref()),
                opt(g.device.as_deref()),
                opt(g.document.as_deref()),
                opt(g.reason.as_deref()),
            ]
        })
        .collect();
    let date = query.date.clone().unwrap_or_default();
    let content = html! {
        form.filter method="get" action="/ui/reconciliations" {
            label for="date" { "对账日期" }
            input #date type="date" name="date" value=(date);
            button type="submit" { "筛选" }
        }
        (table("batches", "每日对账结果",
            &["日期", "证件柜", "对账流水号", "上报证件数", "上报操作数", "状态偏离", "未修复", "日志偏离"],
            &batches))
        (table("missing", "未上传对账数据", &["日期", "证件柜", "单位"], &missing))
        (table("gaps", "清点缺口（异常出柜）", &["时间", "证件柜", "证件标识", "原因"], &gaps))
        (csv_link(&format!("/ui/reconciliations.csv?date={date}")))
    };
    Ok(page(&viewer, "/ui/reconciliations", "对账结果", content))
}

pub async fn reconciliations_csv(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DateQuery>,
) -> Result<Response, UiError> {
    let query = ResultQuery {
        date: query.date,
        sbxlh: None,
    };
    let r = results(&state, &viewer.scope, &query).await?;
    let body = work_list(&r).map_err(|e| WireError::internal("CSV work list", e))?;
    Ok(crate::reconciliations::csv_attachment(
        "reconciliations.csv",
        body,
    ))
}

// --- alerts -------------------------------------------------------------------------------

const ALERT_HEADER: [&str; 5] = ["类型", "单位", "对象", "时间", "详情"];

async fn alert_rows(state: &AppState, scope: &Scope) -> Result<Vec<Vec<String>>, UiError> {
    let field = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    Ok(alert_items(state, scope, "")
        .await?
        .iter()
        .map(|a| {
            let subject = a.get("subject").cloned().unwrap_or(Value::Null);
            vec![
                field(a, "kind").unwrap_or_default(),
                field(a, "unit").unwrap_or_default(),
                format!(
                    "{} {}",
                    field(&subject, "type").unwrap_or_default(),
                    field(&subject, "id")
                        .or_else(|| field(&subject, "sbxlh"))
                        .unwrap_or_default()
                ),
                field(a, "raised_at").unwrap_or_default(),
                a.get("detail").map(Value::to_string).unwrap_or_default(),
            ]
        })
        .collect())
}

pub async fn alerts(State(state): State<AppState>, viewer: Viewer) -> Result<Response, UiError> {
    let rows = alert_rows(&state, &viewer.scope).await?;
    let content = html! {
        p.note { "异常出柜、人证不在柜时出境、未审批出柜、设备告警、被拒绝的上报、对账偏离与未上传。" }
        (table("alerts", "告警", &ALERT_HEADER, &rows))
        (csv_link("/ui/alerts.csv"))
    };
    Ok(page(&viewer, "/ui/alerts", "告警", content))
}

csv_of_list!(alerts_csv, alert_rows, "alerts.csv", ALERT_HEADER);
