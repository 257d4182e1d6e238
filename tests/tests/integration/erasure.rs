//! Issue 16, erasure by person (docs/personal-data.md, "Erasure"): an operator erases a revoked
//! person; their data key is gone, every read shows them erased, the log still verifies, every
//! other person stays readable, the views rebuild from the log, and nothing more about them is
//! recorded.

use custody_simulator::generate::document_id;
use custody_simulator::unit::{FilingKind, PersonData};
use custody_simulator::DepositKind;
use custody_tests::{StoreKind, TestApp};
use reqwest::Method;
use serde_json::json;

use crate::exit_entry::{record, send_ok};
use crate::lifecycle::{filed, processes_caught_up, Parties};

fn erasure() -> serde_json::Value {
    json!({"ground": "purpose_fulfilled", "reference": "RS-2026/17"})
}

/// Rebuilds one projection and waits until readers read the new generation.
async fn rebuild(app: &TestApp, name: &str) {
    let (status, body) = app
        .ops(
            Method::POST,
            &format!("/api/v1/ops/projections/{name}/rebuild"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{body}");
    loop {
        let (_, body) = app.ops(Method::GET, "/api/v1/ops/projections", None).await;
        let view = body["projections"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
            .expect("projection");
        match view["rebuild"]["state"].as_str() {
            Some("finished") => break,
            Some("failed") => panic!("rebuild of {name} failed: {view}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn an_erased_person_is_unreadable_everywhere_and_the_log_still_verifies() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let Parties {
            unit,
            cabinet,
            client,
            adapter,
        } = Parties::of(&app).await;

        // A leaves (filed, a document deposited, the filing revoked: the cascade cancels the
        // document); B stays.
        let leaving = record();
        let staying = record();
        let a = PersonData::holder_of(&leaving);
        let b = PersonData::holder_of(&staying);
        filed(&app, &client, &adapter, FilingKind::New, &a).await;
        filed(&app, &client, &adapter, FilingKind::New, &b).await;
        for (i, document) in [&leaving, &staying].into_iter().enumerate() {
            send_ok(
                &app,
                cabinet.deposit(document, &cabinet.drawer(i), DepositKind::New, app.now_ms()),
                "deposit",
            )
            .await;
        }
        let a_id = a.person_id().expect("rybs");
        let b_id = b.person_id().expect("rybs");
        let a_doc = document_id(&leaving).expect("zjbs");
        let b_doc = document_id(&staying).expect("zjbs");
        app.caught_up().await;

        // Not while the filing is in force, nor for a stranger, nor with a bad reference; an
        // auditor may not erase.
        let path = |rybs: &str| format!("/api/v1/ops/persons/{rybs}/erasure");
        let (status, body) = app.ops(Method::POST, &path(&a_id), Some(erasure())).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (409, Some("E_ILLEGAL_TRANSITION")),
            "{kind:?}: {body}"
        );
        let nobody = "0".repeat(64);
        let (status, body) = app.ops(Method::POST, &path(&nobody), Some(erasure())).await;
        assert_eq!(status, 404, "{body}");
        let bad = json!({"ground": "purpose_fulfilled", "reference": "张三"});
        let (status, body) = app.ops(Method::POST, &path(&a_id), Some(bad)).await;
        assert_eq!(body["error_code"], "E_INVALID_FIELD", "{status} {body}");
        let auditor = app.token("auditor", &unit, &["pii"]).await;
        let answer = reqwest::Client::new()
            .post(app.url(&path(&a_id)))
            .bearer_auth(&auditor)
            .json(&erasure())
            .send()
            .await
            .expect("post");
        assert_eq!(answer.status().as_u16(), 403);

        filed(&app, &client, &adapter, FilingKind::Revoke, &a).await;
        processes_caught_up(&app).await;
        app.caught_up().await;
        let events_before = app.store.log.count().await.expect("count");

        let (status, body) = app.ops(Method::POST, &path(&a_id), Some(erasure())).await;
        assert_eq!(status, 200, "{kind:?}: {body}");
        assert_eq!(body["recorded"], true, "{body}");
        assert_eq!(body["key_destroyed"], true, "{body}");
        assert_eq!(body["documents"], json!([a_doc]), "{body}");
        // Again: nothing more is recorded, and the key stays gone.
        let (status, again) = app.ops(Method::POST, &path(&a_id), Some(erasure())).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(
            (
                again["recorded"].as_bool(),
                again["key_destroyed"].as_bool()
            ),
            (Some(false), Some(false)),
            "{again}"
        );
        let erasures: Vec<_> = app
            .store
            .log
            .events_of("Person", &a_id)
            .await
            .expect("events")
            .into_iter()
            .filter(|e| e.event_type == "PersonalDataErased")
            .collect();
        assert_eq!(erasures.len(), 1, "recorded once, as an event of its own");
        assert_eq!(
            erasures[0].payload["PersonalDataErased"]["reference"],
            "RS-2026/17"
        );
        assert_eq!(
            app.store.log.count().await.expect("count"),
            events_before + 1,
            "the erasure appends one event and changes none"
        );
        app.caught_up().await;

        let check = |label: &'static str| {
            let app = &app;
            let a_id = a_id.clone();
            let b_id = b_id.clone();
            let a_doc = a_doc.clone();
            let b_doc = b_doc.clone();
            let staying = staying.clone();
            let unit = unit.clone();
            async move {
                let reader = app.token("reader", &unit, &["pii"]).await;
                let (status, person) = app.read(&reader, &format!("/api/v1/persons/{a_id}")).await;
                assert_eq!(status, 200, "{label}: {person}");
                assert_eq!(person["state"], "Erased", "{label}: {person}");
                assert_eq!(person["xm"], serde_json::Value::Null, "{label}: {person}");
                assert_eq!(
                    person["gmsfhm"],
                    serde_json::Value::Null,
                    "{label}: {person}"
                );
                let (status, document) = app
                    .read(&reader, &format!("/api/v1/documents/{a_doc}"))
                    .await;
                assert_eq!(status, 200, "{label}: {document}");
                assert_eq!(document["state"], "Cancelled", "{label}: {document}");
                assert_eq!(
                    document["zjhm"],
                    serde_json::Value::Null,
                    "{label}: {document}"
                );
                assert_eq!(
                    document["holder"]["gmsfhm"],
                    serde_json::Value::Null,
                    "{label}: {document}"
                );
                // Everyone else reads as before.
                let (status, other) = app
                    .read(&reader, &format!("/api/v1/documents/{b_doc}"))
                    .await;
                assert_eq!(status, 200, "{label}: {other}");
                assert_eq!(other["zjhm"], staying.document_number.as_str(), "{label}");
                let (_, other) = app.read(&reader, &format!("/api/v1/persons/{b_id}")).await;
                assert_eq!(
                    other["gmsfhm"],
                    staying.citizen_id_number.as_str(),
                    "{label}"
                );
                // The history keeps every event; the erased fields say whose they were.
                let auditor = app.token("auditor", &unit, &["pii"]).await;
                let (status, history) = app
                    .read(&auditor, &format!("/api/v1/audit/documents/{a_doc}/events"))
                    .await;
                assert_eq!(status, 200, "{label}: {history}");
                assert_eq!(
                    history["events"][0]["payload"]["Deposited"]["record"],
                    json!({"erased_for": a_id}),
                    "{label}: {history}"
                );
                let (status, verdict) = app.read(&auditor, "/api/v1/audit/verify").await;
                assert_eq!(status, 200, "{label}: {verdict}");
                assert_eq!(verdict["verified"], true, "{label}: {verdict}");
            }
        };
        check("after the erasure").await;
        // The views rebuilt from the log say the same.
        rebuild(&app, "documents").await;
        rebuild(&app, "persons").await;
        app.caught_up().await;
        check("after a rebuild").await;

        // Nothing more about A is recorded: a new document of theirs is refused, and kept.
        let mut again = record();
        again.citizen_id_number = leaving.citizen_id_number.clone();
        again.chinese_name = leaving.chinese_name.clone();
        let answer = app
            .send(
                &cabinet
                    .deposit(&again, &cabinet.drawer(2), DepositKind::New, app.now_ms())
                    .expect("deposit"),
            )
            .await;
        assert!(
            answer.1.to_string().contains("E_PERSON_ERASED"),
            "{kind:?}: {}",
            answer.1
        );
        let new_doc = document_id(&again).expect("zjbs");
        assert!(
            app.store
                .log
                .events_of("Document", &new_doc)
                .await
                .expect("events")
                .is_empty(),
            "a refused deposit appends nothing"
        );
        let (_, kept) = app.ops(Method::GET, "/api/v1/ops/rejections", None).await;
        assert!(
            kept.to_string().contains("E_PERSON_ERASED"),
            "the refusal is kept: {kept}"
        );
        // And a filing for the same person is refused by the state machine.
        let item = client
            .filing_item(FilingKind::New, &a, "科员")
            .expect("item");
        let data = client
            .filing_list_data(vec![item], app.now_ms())
            .expect("filing list");
        let answer = app
            .send(&client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign"))
            .await;
        assert!(
            answer.1.to_string().contains("E_ILLEGAL_TRANSITION")
                || answer.1.to_string().contains("E_PERSON_ERASED"),
            "{kind:?}: {}",
            answer.1
        );
        app.stop().await;
    }
}
