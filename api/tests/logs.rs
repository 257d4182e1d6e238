//! `custody serve --log-format json`: one JSON object per line, and one line per request with
//! its route template, status, latency and request id (the one the client sent, echoed).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use serde_json::Value;

/// The service's JSON log lines as they come, and the child to stop.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    _data: tempfile::TempDir,
}

impl Served {
    fn start() -> Served {
        let data = tempfile::tempdir().expect("temporary data directory");
        let mut child = Command::new(env!("CARGO_BIN_EXE_custody"))
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data.path())
            .env(
                "CUSTODY_OPS_TOKEN",
                "log-test-operator-token-0123456789abcdef",
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start custody serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Served {
            child,
            lines,
            _data: data,
        }
    }

    /// The next log line that parses and satisfies `wanted` (every line must be JSON).
    fn line(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the service logs on");
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if wanted(&value) {
                return value;
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_request_is_one_json_line_with_its_request_id() {
    let served = Served::start();
    let start = served.line(|v| v["message"] == "custody serving");
    let address = start["address"].as_str().expect("the address it serves on");
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
        .header(
            "authorization",
            "Bearer log-test-operator-token-0123456789abcdef",
        )
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
