//! Every error answer, on every route, is the JSON error body with a documented code (SPEC
//! §7.1), also where axum itself refuses: a body that is not JSON, a query or path that does
//! not parse, an unknown route, a method the route does not take.

use custody_api::ErrorCode;
use custody_tests::{StoreKind, TestApp, OPS_TOKEN};
use serde_json::Value;

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(OPS_TOKEN)
        .body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, kind, body)
}

/// (what, method, path, content type, body, status, code)
type Case<'a> = (
    &'a str,
    reqwest::Method,
    &'a str,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
);

#[tokio::test]
async fn every_error_is_the_json_error_body() {
    let app = TestApp::spawn(StoreKind::Embedded).await;
    let json = Some("application/json");
    let state_path = format!("/api/v1/audit/documents/{}/state", "0".repeat(64));
    let cases: Vec<Case> = vec![
        (
            "a page that is not a number",
            reqwest::Method::GET,
            "/api/v1/documents?page=abc",
            None,
            "",
            400,
            "E_MALFORMED",
        ),
        (
            "malformed JSON on an ops call",
            reqwest::Method::POST,
            "/api/v1/ops/orgs",
            json,
            "{",
            400,
            "E_MALFORMED",
        ),
        (
            "a JSON body of the wrong shape",
            reqwest::Method::POST,
            "/api/v1/ops/orgs",
            json,
            "{\"name\": 1}",
            400,
            "E_MALFORMED",
        ),
        (
            "a JSON body without its content type",
            reqwest::Method::POST,
            "/api/v1/ops/orgs",
            None,
            "{}",
            415,
            "E_UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "state as of T without T",
            reqwest::Method::GET,
            &state_path,
            None,
            "",
            400,
            "E_MALFORMED",
        ),
        (
            "an unknown route",
            reqwest::Method::GET,
            "/api/v1/no-such-thing",
            None,
            "",
            404,
            "E_NOT_FOUND",
        ),
        (
            "the root of nothing",
            reqwest::Method::GET,
            "/nothing/here",
            None,
            "",
            404,
            "E_NOT_FOUND",
        ),
        (
            "a method the route does not take",
            reqwest::Method::GET,
            "/yth_g1xt/api/v1/sjsb-xt",
            None,
            "",
            405,
            "E_METHOD_NOT_ALLOWED",
        ),
        (
            "DELETE on a read route",
            reqwest::Method::DELETE,
            "/api/v1/documents",
            None,
            "",
            405,
            "E_METHOD_NOT_ALLOWED",
        ),
    ];
    for (case, method, path, content_type, body, status, code) in cases {
        let (got, kind, answer) = call(&app, method, path, content_type, body).await;
        assert_eq!(got, status, "{case}: {answer}");
        assert_eq!(kind.as_deref(), Some("application/json"), "{case}");
        assert_eq!(answer["error_code"], code, "{case}: {answer}");
        assert!(
            answer["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{case}"
        );
        // And the code is one of the documented table, with that status.
        let documented = ErrorCode::ALL
            .iter()
            .find(|c| c.as_str() == code)
            .unwrap_or_else(|| panic!("{code} is not in the table"));
        assert_eq!(documented.status().as_u16(), status, "{case}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_short_operator_secret_is_refused_at_start() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = custody_api::ServeConfig::embedded(
        "127.0.0.1:0".parse().expect("address"),
        data.path().to_path_buf(),
    );
    config.ops_token = Some("ten-chars!".into());
    match custody_api::App::build(&config).await {
        Err(custody_api::StartError::Bootstrap(reason)) => {
            assert!(reason.contains("32 characters"), "{reason}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a 10-character operator secret was accepted"),
    }
}
