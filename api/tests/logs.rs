//! `custody serve --log-format json`: one JSON object per line, and one line per request with
//! its route template, status, latency and request id (the one the client sent, echoed).

mod common;

use common::{Served, OPS_TOKEN};

#[tokio::test]
async fn a_request_is_one_json_line_with_its_request_id() {
    let served = Served::start(&["--log-format", "json", "serve"]);
    let address = served.address();
    let client = reqwest::Client::new();

    let answer = client
        .get(format!("http://{address}/health"))
        .header("x-request-id", "probe-42")
        .send()
        .await
        .expect("GET /health");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-request-id"], "probe-42");
    let line = served.line(|v| v["message"] == "request");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/health");
    assert_eq!(line["status"], 200);
    assert_eq!(line["request_id"], "probe-42");
    assert!(line["latency_ms"].as_f64().is_some(), "{line}");
    assert_eq!(line["target"], "custody::request");

    // No id, or one that is not plain: one is made, echoed and logged. The route is the
    // template, never the path (which may carry a person's identifier).
    let answer = client
        .get(format!(
            "http://{address}/api/v1/persons/110101199003070015"
        ))
        .header("x-request-id", "not plain!")
        .header("authorization", format!("Bearer {OPS_TOKEN}"))
        .send()
        .await
        .expect("GET a person");
    let made = answer.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_ne!(made, "not plain!");
    let line = served.line(|v| v["message"] == "request");
    assert_eq!(line["route"], "/api/v1/persons/{rybs}");
    assert_eq!(line["request_id"], made.as_str());
    assert!(
        line["sender"]
            .as_str()
            .is_some_and(|s| s.starts_with("token:")),
        "{line}"
    );
    assert!(!line.to_string().contains("110101199003070015"), "{line}");
}
