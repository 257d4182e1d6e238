//! Issue 16, blind indexes (docs/personal-data.md): a document is found by its number and by its
//! holder's citizen ID number through keyed HMAC-SM3 indexes, never a plain hash of the value;
//! the index key rotates online while the service runs and reads go on finding.

use custody_domain::identifiers::sm3_hex;
use custody_simulator::generate::document_id;
use custody_simulator::DepositKind;
use custody_tests::{StoreKind, TestApp};
use sqlx::Row;

use crate::exit_entry::{record, send_ok};

/// Every index cell of the views.
async fn index_cells(app: &TestApp) -> Vec<String> {
    let pool = app.store.log.platform().pool();
    let mut cells = Vec::new();
    for sql in [
        "SELECT zjhm_index AS c FROM view_documents UNION ALL \
         SELECT holder_gmsfhm_index AS c FROM view_documents",
        "SELECT gmsfhm_index AS c FROM view_persons",
    ] {
        for row in sqlx::query(sql).fetch_all(pool).await.expect("cells") {
            if let Some(cell) = row.try_get::<Option<String>, _>("c").expect("cell") {
                cells.push(cell);
            }
        }
    }
    cells
}

async fn found(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let (status, body) = app.read(token, &format!("/api/v1/documents?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .map(|d| d["zjbs"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn one_store(kind: StoreKind) {
    let app = TestApp::spawn(kind).await;
    let unit = app.unit().await;
    let cabinet = app.active_cabinet_of(&unit).await;
    let documents = [record(), record()];
    for (i, document) in documents.iter().enumerate() {
        send_ok(
            &app,
            cabinet.deposit(document, &cabinet.drawer(i), DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
    }
    app.caught_up().await;
    let [first, second] = &documents;
    let first_id = document_id(first).expect("zjbs");
    let second_id = document_id(second).expect("zjbs");
    // A reader without `pii` finds by value too (the answer is masked as ever).
    let reader = app.token("reader", &unit, &[]).await;
    let by_number = format!("zjhm={}", first.document_number);
    let by_citizen = format!("gmsfhm={}", second.citizen_id_number);
    assert_eq!(
        found(&app, &reader, &by_number).await,
        std::slice::from_ref(&first_id),
        "{kind:?}"
    );
    assert_eq!(
        found(&app, &reader, &by_citizen).await,
        std::slice::from_ref(&second_id),
        "{kind:?}"
    );
    let (status, body) = app.read(&reader, "/api/v1/documents?gmsfhm=123").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (422, Some("E_INVALID_FIELD"))
    );

    // What the views keep is keyed: neither the value nor its plain SM3 is in any cell.
    let cells = index_cells(&app).await;
    assert!(cells.len() >= 4, "{kind:?}: {cells:?}");
    for document in &documents {
        for value in [&document.document_number, &document.citizen_id_number] {
            let plain = sm3_hex(value.as_bytes());
            assert!(
                cells
                    .iter()
                    .all(|c| !c.contains(value.as_str()) && !c.contains(&plain)),
                "{kind:?}: {value} or its plain hash is stored: {cells:?}"
            );
        }
    }
    assert!(cells.iter().all(|c| c.starts_with("k1:")), "{cells:?}");

    // Rotation, online: reports go on arriving during it; every cell ends under the new key,
    // the old key is gone, and the same look-ups still find.
    let rotation = custody_api::master_key::rotate_index_with_progress(
        &app.store.log,
        custody_eventlog::personal::KEY_CACHE_TTL + std::time::Duration::from_secs(1),
    );
    let third = record();
    let during = async {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        send_ok(
            &app,
            cabinet.deposit(&third, &cabinet.drawer(2), DepositKind::New, app.now_ms()),
            "deposit during the rotation",
        )
        .await;
    };
    let (rotated, ()) = tokio::join!(rotation, during);
    let (key, _) = rotated.expect("rotation");
    assert_eq!(key, "k2");
    app.caught_up().await;
    let cells = index_cells(&app).await;
    assert!(cells.len() >= 6, "{kind:?}: {cells:?}");
    assert!(
        cells.iter().all(|c| c.starts_with("k2:")),
        "{kind:?}: {cells:?}"
    );
    let keys: Vec<String> = sqlx::query_scalar("SELECT id FROM index_keys")
        .fetch_all(app.store.log.platform().pool())
        .await
        .expect("keys");
    assert_eq!(keys, ["k2"], "the old index key is destroyed");
    // The serving instance read the new key while the rotation waited out its cache.
    assert_eq!(
        found(&app, &reader, &by_number).await,
        [first_id],
        "{kind:?}"
    );
    assert_eq!(
        found(&app, &reader, &by_citizen).await,
        [second_id],
        "{kind:?}"
    );
    let third_id = document_id(&third).expect("zjbs");
    let by_third = format!("zjhm={}", third.document_number);
    assert_eq!(
        found(&app, &reader, &by_third).await,
        [third_id],
        "{kind:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn documents_are_found_by_keyed_indexes_and_the_index_key_rotates_online() {
    // Both stores at once: the rotation waits out the instances' key cache.
    tokio::join!(one_store(StoreKind::ALL[0]), one_store(StoreKind::ALL[1]));
}
