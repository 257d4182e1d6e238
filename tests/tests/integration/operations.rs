//! Operators' surfaces: liveness and readiness.

use std::time::Duration;

use custody_api::Transport;
use custody_projections::feed::StreamSettings;
use custody_tests::{nats, AppOptions, OwnPostgres, StoreKind, TestApp, TestStore};
use serde_json::Value;

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app
        .client
        .get(app.url(path))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

/// Asks `/ready` until it answers `want` (at most `attempts` times, half a second apart).
async fn ready_becomes(app: &TestApp, want: bool, attempts: usize) -> (u16, Value) {
    let mut last = get(app, "/ready").await;
    for _ in 0..attempts {
        if last.1["ready"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = get(app, "/ready").await;
    }
    last
}

#[tokio::test]
async fn ready_on_both_stores_and_with_jetstream() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let (status, body) = get(&app, "/ready").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["ready"], true);
        assert_eq!(
            body["checks"],
            serde_json::json!({"store": "ok", "migrated": "ok", "workers": "ok"})
        );
        app.stop().await;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let app = TestApp::spawn_with(
        StoreKind::Postgres,
        AppOptions {
            transport: Transport::JetStream {
                url: nats().url.clone(),
                settings: StreamSettings::new(format!("READY_{id}"), format!("ready.{id}")),
            },
            ..AppOptions::default()
        },
    )
    .await;
    let (status, body) = ready_becomes(&app, true, 20).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["nats"], "ok");
    assert_eq!(body["checks"]["relay"], "ok");
    app.stop().await;
}

#[tokio::test]
async fn ready_is_false_while_postgresql_is_stopped_and_true_once_it_is_back() {
    let mut postgres = OwnPostgres::start().expect("a PostgreSQL of this test's own");
    let app = TestApp::serve(
        TestStore::postgres_on(&postgres.server).await,
        AppOptions::default(),
    )
    .await;
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(
        (status, &body["ready"]),
        (200, &Value::Bool(true)),
        "{body}"
    );

    postgres.stop();
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["store"], "unavailable");
    // Alive all the same: restarting the service would not bring the database back.
    let (status, _) = get(&app, "/health").await;
    assert_eq!(status, 200);

    postgres.restart().expect("PostgreSQL starts again");
    let (status, body) = ready_becomes(&app, true, 60).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["checks"],
        serde_json::json!({"store": "ok", "migrated": "ok", "workers": "ok"})
    );
    app.stop().await;
}
