//! The organisation departments' page (组织部门查询统计页面; design §2.8, §2.6.4.4;
//! docs/department-page.md): server-rendered HTML under `/ui/`, signed in with a reader token
//! held in a session cookie, scoped and masked exactly as the read API (`crate::scope`).
//!
//! Every view calls the same readers as the read API (`custody_projections::read`, the
//! reminders, the reconciliation results) and renders them; every list also downloads as CSV,
//! its cells neutralised as `reconciliations.csv`'s are. Nothing is fetched from elsewhere at
//! run time: the style sheet is built into the binary and the charts are SVG drawn here.

mod chart;
mod session;
mod views;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};

use crate::auth::Caller;
use crate::error::{ErrorCode, WireError};
use crate::scope::Scope;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "custody_session";

const STYLE: &str = include_str!("style.css");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/assets/style.css", get(style))
        .route("/ui/login", get(session::login_page).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/", get(views::overview))
        .route("/ui/overview.csv", get(views::overview_csv))
        .route("/ui/destinations", get(views::destinations))
        .route("/ui/destinations.csv", get(views::destinations_csv))
        .route("/ui/overdue", get(views::overdue))
        .route("/ui/overdue.csv", get(views::overdue_csv))
        .route("/ui/search", get(views::search))
        .route("/ui/documents/{zjbs}", get(views::document))
        .route(
            "/ui/documents/{zjbs}/timeline.csv",
            get(views::timeline_csv),
        )
        .route("/ui/cabinets", get(views::cabinets))
        .route("/ui/cabinets.csv", get(views::cabinets_csv))
        .route("/ui/reconciliations", get(views::reconciliations))
        .route("/ui/reconciliations.csv", get(views::reconciliations_csv))
        .route("/ui/alerts", get(views::alerts))
        .route("/ui/alerts.csv", get(views::alerts_csv))
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

/// Why a page could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session, or it ended (signed out, idle, too old, its token revoked): to sign-in.
    #[error("not signed in, or the session has ended")]
    SignedOut,
    /// A state-changing form that did not come from this page (CSRF).
    #[error("the form did not come from this page")]
    CrossSite,
    /// A refusal of the read side, shown as a page with its wire code and status.
    #[error("{0}")]
    Wire(WireError),
}

impl From<WireError> for UiError {
    fn from(error: WireError) -> Self {
        match error.code {
            ErrorCode::Unauthorized => UiError::SignedOut,
            _ => UiError::Wire(error),
        }
    }
}

impl From<custody_projections::ProjectionError> for UiError {
    fn from(error: custody_projections::ProjectionError) -> Self {
        UiError::from(WireError::from(error))
    }
}

impl From<custody_eventlog::EventLogError> for UiError {
    fn from(error: custody_eventlog::EventLogError) -> Self {
        UiError::from(WireError::from(error))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            UiError::SignedOut => return Redirect::to("/ui/login").into_response(),
            UiError::CrossSite => (
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden.as_str(),
                "请求不是来自本页面，已拒绝。".to_string(),
            ),
            UiError::Wire(error) => {
                error.log_if_internal();
                (error.status(), error.code.as_str(), error.message)
            }
        };
        let body = bare_page(
            "出错了",
            html! {
                main #main {
                    h1 { "出错了" }
                    p role="alert" { (message) }
                    p { "错误代码：" code { (code) } }
                    p { a href="/ui/" { "返回概览" } }
                }
            },
        );
        (status, page_headers(), body.into_string()).into_response()
    }
}

/// A signed-in department: its scope (org subtree, masking) and its session's anti-CSRF value.
pub struct Viewer {
    pub scope: Scope,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let id = cookie(&parts.headers, COOKIE).ok_or(UiError::SignedOut)?;
        let now = state.commands.clock().now().timestamp_millis();
        let session = state
            .sessions
            .touch(&id, now)
            .await?
            .ok_or(UiError::SignedOut)?;
        // The token is looked up on every request: a revoked token ends the session now.
        let caller = match Caller::of_digest(state, &session.token_digest).await {
            Ok(caller) => caller,
            Err(error) => {
                if error.code == ErrorCode::Unauthorized {
                    state.sessions.close(&id).await?;
                }
                return Err(error.into());
            }
        };
        Ok(Viewer {
            scope: Scope::of(state, caller).await?,
            csrf: session.csrf,
        })
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|v| !v.is_empty())
}

/// Headers of every page: never cached, never framed, nothing loaded from elsewhere.
fn page_headers() -> [(header::HeaderName, HeaderValue); 5] {
    [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ]
}

fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="zh-CN" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · 证件保管 组织部门查询统计" }
                link rel="stylesheet" href="/ui/assets/style.css";
            }
            body { (body) }
        }
    }
}

/// The views of the navigation bar: path, name.
const NAV: [(&str, &str); 7] = [
    ("/ui/", "概览"),
    ("/ui/destinations", "去向统计"),
    ("/ui/overdue", "逾期未还"),
    ("/ui/search", "人员与证件查询"),
    ("/ui/cabinets", "证件柜"),
    ("/ui/reconciliations", "对账结果"),
    ("/ui/alerts", "告警"),
];

/// A signed-in page: the navigation, the sign-out form, the view.
fn page(viewer: &Viewer, current: &str, title: &str, content: Markup) -> Response {
    let body = bare_page(
        title,
        html! {
            a.skip href="#main" { "跳到正文" }
            header {
                p.brand { "证件保管 · 组织部门查询统计" }
                nav aria-label="主导航" {
                    ul {
                        @for (path, name) in NAV {
                            li {
                                @if path == current {
                                    a href=(path) aria-current="page" { (name) }
                                } @else {
                                    a href=(path) { (name) }
                                }
                            }
                        }
                    }
                }
                form.logout method="post" action="/ui/logout" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    span.masking data-pii=(viewer.scope.pii()) {
                        @if viewer.scope.pii() { "显示完整身份信息（查询已记入审计）" }
                        @else { "身份证号、证件号码已脱敏" }
                    }
                    button type="submit" #logout { "退出登录" }
                }
            }
            main #main {
                h1 { (title) }
                (content)
            }
        },
    );
    (StatusCode::OK, page_headers(), body.into_string()).into_response()
}

/// A link to the CSV of a view.
fn csv_link(href: &str) -> Markup {
    html! { p.export { a href=(href) download { "导出 CSV" } } }
}

/// A CSV download of rows, each cell neutralised (`reconciliations.csv`'s rule and writer).
fn csv(filename: &str, header: &[&str], rows: &[Vec<String>]) -> Result<Response, UiError> {
    let failed = |e: csv::Error| UiError::from(WireError::internal("CSV export", e));
    let mut out = crate::reconciliations::csv_writer();
    out.write_record(crate::reconciliations::neutralised(header.iter().copied()))
        .map_err(failed)?;
    for row in rows {
        out.write_record(crate::reconciliations::neutralised(
            row.iter().map(String::as_str),
        ))
        .map_err(failed)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| failed(e.into_error().into()))?;
    Ok(crate::reconciliations::csv_attachment(filename, body))
}

/// A table of rows, its header and its cells as text; `id` names it for the tests.
fn table(id: &str, caption: &str, header: &[&str], rows: &[Vec<String>]) -> Markup {
    html! {
        table #(id) {
            caption { (caption) "（" (rows.len()) " 条）" }
            thead { tr { @for h in header { th scope="col" { (h) } } } }
            tbody {
                @for row in rows {
                    tr { @for cell in row { td { (cell) } } }
                }
                @if rows.is_empty() {
                    tr { td colspan=(header.len()) { "无" } }
                }
            }
        }
    }
}
