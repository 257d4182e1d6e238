//! Sign-in and sign-out (docs/department-page.md): a reader token typed into `/ui/login`
//! becomes a session cookie (HttpOnly, SameSite=Strict, Path=/ui, Secure behind TLS); the
//! token itself never reaches the browser again.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::{bare_page, cookie, page_headers, UiError, Viewer, COOKIE};
use crate::auth::{secret_digest, Caller};
use crate::error::ErrorCode;
use crate::scope::Scope;
use crate::sessions::ABSOLUTE_MS;
use crate::state::AppState;

/// Whether a state-changing request came from this site: a browser says so in
/// `Sec-Fetch-Site` and `Origin`; a request naming another site is refused. (With the
/// SameSite=Strict cookie and the per-session form value this is the third lock.)
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

/// Served over TLS: a TLS-terminating proxy in front says so (`custody serve` itself speaks
/// plain HTTP on the organisation network).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age_s: i64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}"
    ))
    .ok()
}

fn login_form(status: StatusCode, message: Option<&str>) -> Response {
    let body = bare_page(
        "登录",
        html! {
            main #main.login {
                h1 { "证件保管 · 组织部门查询统计" }
                form method="post" action="/ui/login" {
                    @if let Some(message) = message {
                        p.error role="alert" #login-error { (message) }
                    }
                    label for="token" { "查询令牌" }
                    input #token type="password" name="token" required autocomplete="off"
                        autofocus aria-describedby="token-help";
                    p #token-help { "请输入本单位的只读查询令牌（reader）。" }
                    button type="submit" #sign-in { "登录" }
                }
            }
        },
    );
    (status, page_headers(), body.into_string()).into_response()
}

pub async fn login_page() -> Response {
    login_form(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    if !same_origin(&headers) {
        return Err(UiError::CrossSite);
    }
    let digest = secret_digest(form.token.trim());
    let caller = match Caller::of_digest(&state, &digest).await {
        Ok(caller) => caller,
        Err(error) if error.code == ErrorCode::Unauthorized => {
            return Ok(login_form(
                StatusCode::UNAUTHORIZED,
                Some("令牌无效或已吊销。"),
            ));
        }
        Err(error) => return Err(error.into()),
    };
    // A token without an org (other than an operator's) sees nothing: refused here, as the API does.
    if let Err(error) = Scope::of(&state, caller).await {
        if error.code == ErrorCode::Forbidden {
            return Ok(login_form(
                StatusCode::FORBIDDEN,
                Some("该令牌不属于任何组织，不能查询。"),
            ));
        }
        return Err(error.into());
    }
    // Any session the browser had is ended: a sign-in always gets a new session id.
    if let Some(old) = cookie(&headers, COOKIE) {
        state.sessions.close(&old).await?;
    }
    let now = state.commands.clock().now().timestamp_millis();
    let (id, _) = state.sessions.open(&digest, now).await?;
    let mut response = Redirect::to("/ui/").into_response();
    if let Some(value) = session_cookie(&id, ABSOLUTE_MS / 1000, over_tls(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
    Form(form): Form<LogoutForm>,
) -> Result<Response, UiError> {
    if !same_origin(&headers) || form.csrf != viewer.csrf {
        return Err(UiError::CrossSite);
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.close(&id).await?;
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Some(value) = session_cookie("", 0, over_tls(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_form_from_another_site_is_refused() {
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("host", "custody:8080"),
            ("origin", "http://custody:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "custody:8080"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("origin", "http://custody:8080")])));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_behind_tls() {
        let plain = session_cookie("abc", 60, false).expect("cookie");
        assert_eq!(
            plain,
            "custody_session=abc; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let tls = session_cookie(
            "abc",
            60,
            over_tls(&headers(&[("x-forwarded-proto", "https")])),
        )
        .expect("cookie");
        assert!(tls.to_str().expect("text").ends_with("; Secure"));
    }
}
