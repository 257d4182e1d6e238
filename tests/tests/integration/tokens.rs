//! API tokens (docs/operations.md, "Tokens"), on both stores: a token may carry an expiry after
//! which it is refused like a revoked one, and operators list every token with its last use,
//! never its secret.

use custody_tests::{StoreKind, TestApp, OPS_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn a_token_expires_and_operators_see_its_last_use_but_never_a_secret() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let expires_at = (app.clock.now() + chrono::Duration::hours(1)).to_rfc3339();
        let (status, issued) = app
            .ops(
                Method::POST,
                "/api/v1/ops/tokens",
                Some(json!({"role": "reader", "org": unit, "expires_at": expires_at})),
            )
            .await;
        assert_eq!(status, 201, "{issued}");
        let secret = issued["token"].as_str().expect("secret").to_string();
        let id = issued["id"].as_str().expect("id").to_string();
        assert_eq!(app.read(&secret, "/api/v1/stats").await.0, 200, "{kind:?}");

        let (status, listed) = app.ops(Method::GET, "/api/v1/ops/tokens", None).await;
        assert_eq!(status, 200, "{listed}");
        let text = listed.to_string();
        assert!(
            !text.contains(&secret) && !text.contains(OPS_TOKEN),
            "no secret listed"
        );
        let tokens = listed["tokens"].as_array().cloned().unwrap_or_default();
        let reader: &Value = tokens
            .iter()
            .find(|t| t["id"] == id.as_str())
            .expect("listed");
        assert_eq!(reader["role"], "reader");
        assert_eq!(reader["org"], unit.as_str());
        assert!(reader["created_at"].is_string());
        assert!(reader["expires_at"].is_string());
        assert!(
            reader["last_used_at"].is_string(),
            "its use is noted: {reader}"
        );
        assert!(reader["revoked_at"].is_null());

        app.clock.advance(chrono::Duration::hours(2));
        let (status, refused) = app.read(&secret, "/api/v1/stats").await;
        assert_eq!(status, 401, "{kind:?}: expired");
        assert_eq!(refused["error_code"], "E_UNAUTHORIZED");

        let past = (app.clock.now() - chrono::Duration::minutes(1)).to_rfc3339();
        let (status, refused) = app
            .ops(
                Method::POST,
                "/api/v1/ops/tokens",
                Some(json!({"role": "reader", "org": unit, "expires_at": past})),
            )
            .await;
        assert_eq!(status, 422, "{refused}");
        assert_eq!(refused["error_code"], "E_INVALID_FIELD");
        app.stop().await;
    }
}
