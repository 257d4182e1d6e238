//! The bounded rejected-reports log (docs/security.md, "Rejected reports"), on both stores: an
//! unauthenticated refusal keeps its SM3, size, source and first bytes; beyond a source's cap a
//! minute only a counter grows; lists page by a cursor without bodies; a retention prunes; a junk
//! flood grows the store by a bounded amount.

use std::path::Path;

use custody_domain::identifiers::sm3_hex;
use custody_eventlog::UNAUTHENTICATED_PREFIX_BYTES;
use custody_protocol::SignedRequest;
use custody_simulator::{SimulatedCabinet, Trip};
use custody_tests::samples::date;
use custody_tests::{AppOptions, StoreKind, TestApp};
use reqwest::Method;
use serde_json::Value;

use crate::exit_entry::{kept_envelope, record, rejection_count, rejections};

fn options(per_source_per_minute: u32) -> AppOptions {
    let mut options = AppOptions::default();
    options.rejection_log.per_source_per_minute = per_source_per_minute;
    options
}

/// A body that is no JSON at all: refused before anyone is authenticated.
fn junk(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A signed lend of a document never deposited: refused after authentication (409).
fn lend_of_unknown(app: &TestApp, cabinet: &SimulatedCabinet) -> SignedRequest {
    cabinet
        .lend(
            &record(),
            &cabinet.drawer(0),
            date(2099, 1, 1),
            &Trip::default(),
            app.now_ms(),
        )
        .expect("lend")
}

async fn list(app: &TestApp, query: &str) -> Value {
    let (status, body) = app
        .ops(Method::GET, &format!("/api/v1/ops/rejections{query}"), None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn an_unauthenticated_refusal_keeps_its_digest_size_source_and_first_bytes() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let body = junk(900_000);
        let (status, answer) = app.post_raw("sjsb-xt", body.clone()).await;
        assert_eq!(status, 400, "{answer}");
        let listed = &rejections(&app).await[0];
        assert_eq!(listed["authenticated"], false, "{kind:?}");
        assert_eq!(listed["envelope_size"], 900_000);
        assert_eq!(listed["envelope_whole"], false);
        assert_eq!(
            listed["envelope_sm3"],
            sm3_hex(&body).as_str(),
            "of the whole body"
        );
        assert_eq!(listed["source"], "127.0.0.1");
        let kept = kept_envelope(&app, listed).await;
        let expected = String::from_utf8_lossy(&body[..UNAUTHENTICATED_PREFIX_BYTES]);
        assert_eq!(kept.as_str(), Some(expected.as_ref()), "its first bytes");

        // An authenticated sender's refusal is still kept whole.
        let cabinet = app.active_cabinet().await;
        let lend = lend_of_unknown(&app, &cabinet);
        assert_eq!(app.send(&lend).await.0, 409);
        let listed = &rejections(&app).await[0];
        assert_eq!(listed["authenticated"], true);
        assert_eq!(listed["envelope_whole"], true);
        let posted: Value = serde_json::from_str(&lend.to_json().expect("json")).expect("json");
        assert_eq!(kept_envelope(&app, listed).await, posted);
        app.stop().await;
    }
}

#[tokio::test]
async fn beyond_a_sources_cap_a_minute_only_a_counter_grows() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn_with(kind, options(5)).await;
        let before = rejection_count(&app).await;
        for _ in 0..12 {
            assert_eq!(app.post_raw("sjsb-xt", junk(100)).await.0, 400);
        }
        assert_eq!(rejection_count(&app).await, before + 5, "{kind:?}: the cap");
        let listed = list(&app, "").await;
        let counted = &listed["not_kept_last_hour"];
        assert_eq!(counted.as_array().map(Vec::len), Some(1), "{listed}");
        assert_eq!(counted[0]["source"], "127.0.0.1");
        assert_eq!(counted[0]["error_code"], "E_MALFORMED");
        assert_eq!(counted[0]["count"], 7);

        // Refusals of authenticated senders are never capped.
        let cabinet = app.active_cabinet().await;
        for _ in 0..7 {
            let lend = lend_of_unknown(&app, &cabinet);
            assert_eq!(app.send(&lend).await.0, 409);
        }
        assert_eq!(rejection_count(&app).await, before + 12);

        // A new minute, a new cap.
        app.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(app.post_raw("sjsb-xt", junk(100)).await.0, 400);
        assert_eq!(rejection_count(&app).await, before + 13);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_list_pages_by_a_cursor_and_carries_no_bodies() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        for size in 1..=5 {
            app.post_raw("sjsb-xt", junk(size)).await;
        }
        let mut seen = Vec::new();
        let mut query = "?limit=2".to_string();
        loop {
            let page = list(&app, &query).await;
            let items = page["rejections"].as_array().cloned().unwrap_or_default();
            assert!(items.len() <= 2);
            for item in &items {
                assert!(item.get("envelope").is_none(), "no bodies in lists");
                seen.push(item["envelope_size"].as_i64().unwrap_or_default());
            }
            match page["next_before"].as_i64() {
                Some(cursor) => query = format!("?limit=2&before={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, [5, 4, 3, 2, 1], "{kind:?}: newest first, each once");
        let (status, missing) = app
            .ops(Method::GET, "/api/v1/ops/rejections/999999", None)
            .await;
        assert_eq!(status, 404);
        assert_eq!(missing["error_code"], "E_NOT_FOUND");
        app.stop().await;
    }
}

#[tokio::test]
async fn refusals_past_their_retention_are_pruned() {
    for kind in StoreKind::ALL {
        let mut options = AppOptions::default();
        options.rejection_log.retention = std::time::Duration::from_secs(86_400);
        let app = TestApp::spawn_with(kind, options.clone()).await;
        app.post_raw("sjsb-xt", junk(10)).await;
        assert_eq!(rejection_count(&app).await, 1);
        let clock = app.clock.clone();
        let store = app.stop().await;
        // The retention runs at start and then every hour.
        clock.advance(chrono::Duration::days(2));
        let app = TestApp::serve(store, options).await;
        let mut left = rejection_count(&app).await;
        for _ in 0..100 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            left = rejection_count(&app).await;
        }
        assert_eq!(left, 0, "{kind:?}: pruned past the retention");
        app.stop().await;
    }
}

fn directory_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .expect("read the data directory")
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes the rejected-reports tables take in PostgreSQL.
async fn postgres_bytes(url: &str) -> i64 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .expect("connect");
    let size: i64 = sqlx::query_scalar(
        "SELECT (pg_total_relation_size('rejected_reports') \
         + pg_total_relation_size('rejections_not_kept'))::bigint",
    )
    .fetch_one(&pool)
    .await
    .expect("size");
    pool.close().await;
    size
}

/// What the store takes, in bytes: the embedded data directory, or PostgreSQL's tables.
async fn store_bytes(app: &TestApp) -> i64 {
    match &app.store.choice {
        custody_api::StoreChoice::Embedded => {
            i64::try_from(directory_bytes(app.store.data_dir.path())).unwrap_or(i64::MAX)
        }
        custody_api::StoreChoice::Postgres { url } => postgres_bytes(url).await,
    }
}

/// The stated bound (docs/security.md): 120 junk bodies of 900 KB (108 MB) from one source in
/// one minute keep at most 60 entries of ≤ 4 KiB; the store grows by at most 4 MiB (the
/// embedded store's write-ahead log included).
#[tokio::test]
async fn a_junk_flood_grows_the_store_by_a_bounded_amount() {
    const BOUND: i64 = 4 * 1024 * 1024;
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        app.caught_up().await;
        let before = store_bytes(&app).await;
        let body = junk(900_000);
        for _ in 0..120 {
            assert_eq!(app.post_raw("sjsb-xt", body.clone()).await.0, 400);
        }
        let grown = store_bytes(&app).await - before;
        assert!(
            grown <= BOUND,
            "{kind:?}: grew by {grown} bytes for 108 MB of junk"
        );
        eprintln!("{kind:?}: the store grew by {grown} bytes for 108 MB of junk");
        assert_eq!(rejection_count(&app).await, 60);
        app.stop().await;
    }
}
