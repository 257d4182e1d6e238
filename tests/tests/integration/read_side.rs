//! The read side over HTTP: projections equal a replay of the event store, readers see their
//! org subtree only, personal data is masked without `pii` and audited with it, a rebuild under
//! load ends equal to a replay, and the audit API proves the log unaltered.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use custody_domain::document::Document;
use custody_domain::transitions::Named;
use custody_protocol::DocumentRecord;
use custody_simulator::generate::{document_id, random_document_record};
use custody_simulator::{CancellationReason, DepositKind, SimulatedCabinet, Trip};
use custody_tests::samples::date;
use custody_tests::{StoreKind, TestApp};
use reqwest::Method;
use serde_json::Value;

/// Sends a varied history for `count` documents through `cabinet`; returns their records.
async fn history(app: &TestApp, cabinet: &SimulatedCabinet, count: usize) -> Vec<DocumentRecord> {
    let mut records = Vec::new();
    for i in 0..count {
        let record = random_document_record(&mut rand::rng());
        let drawer = cabinet.drawer(i);
        let now = app.now_ms();
        let mut steps = vec![cabinet.deposit(&record, &drawer, DepositKind::New, now)];
        if i % 2 == 1 {
            steps.push(cabinet.lend(&record, &drawer, date(2099, 12, 24), &Trip::default(), now));
        } else if i % 3 == 2 {
            steps.push(cabinet.take_out(&record, &drawer, None, &Trip::default(), now));
            steps.push(cabinet.deposit(&record, &drawer, DepositKind::Return, now));
        }
        if i % 5 == 4 {
            steps.push(cabinet.cancellation(
                &document_id(&record).expect("zjbs"),
                CancellationReason::Lost,
                now,
            ));
        }
        for step in steps {
            let (status, body) = app.send(&step.expect("request")).await;
            assert_eq!(status, 200, "{body}");
        }
        records.push(record);
    }
    records
}

/// Every document's view equals the aggregate replayed from the event store.
async fn assert_views_equal_replay(app: &TestApp, token: &str, records: &[DocumentRecord]) {
    for record in records {
        let zjbs = document_id(record).expect("zjbs");
        let replayed: Document = app.state.commands.load(&zjbs).await.expect("replay");
        let (status, view) = app.read(token, &format!("/api/v1/documents/{zjbs}")).await;
        assert_eq!(status, 200, "{zjbs}: {view}");
        assert_eq!(view["state"], replayed.state.name(), "{zjbs}");
        let events = app
            .store
            .log
            .events_of("Document", &zjbs)
            .await
            .expect("events");
        assert_eq!(view["version"], events.len() as i64, "{zjbs}");
        assert_eq!(view["zjhm"], record.document_number.as_str());
        assert_eq!(view["holder"]["gmsfhm"], record.citizen_id_number.as_str());
        match &replayed.location {
            Some(location) => {
                assert_eq!(view["location"]["sbxlh"], location.device.as_str());
                assert_eq!(view["location"]["row"], i64::from(location.drawer.row));
                assert_eq!(view["location"]["col"], i64::from(location.drawer.column));
            }
            None => assert_eq!(view["location"], Value::Null),
        }
        assert_eq!(
            view["planned_return"].as_str(),
            replayed.planned_return.map(|d| d.to_string()).as_deref()
        );
        let (status, access) = app
            .read(token, &format!("/api/v1/access-records?zjbs={zjbs}"))
            .await;
        assert_eq!(status, 200);
        let movements = events
            .iter()
            .filter(|e| {
                matches!(
                    e.event_type.as_str(),
                    "Deposited" | "Withdrawn" | "AbnormalWithdrawal" | "ReconciliationCorrected"
                )
            })
            .count();
        assert_eq!(
            access["access_records"].as_array().map(Vec::len),
            Some(movements)
        );
    }
}

#[tokio::test]
async fn views_equal_a_replay_of_the_store() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let records = history(&app, &cabinet, 12).await;
        app.caught_up().await;
        let token = app.token("reader", &unit, &["pii"]).await;
        assert_views_equal_replay(&app, &token, &records).await;
        let (status, list) = app.read(&token, "/api/v1/documents?per_page=500").await;
        assert_eq!(status, 200);
        assert_eq!(list["total"], records.len() as i64);
        let (status, stats) = app.read(&token, "/api/v1/stats").await;
        assert_eq!(status, 200);
        let counted: i64 = stats["documents_by_state"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or_default();
        assert_eq!(counted, records.len() as i64);
        let (status, box_view) = app
            .read(
                &token,
                &format!("/api/v1/cabinets/{}", cabinet.device_serial()),
            )
            .await;
        assert_eq!(status, 200, "{box_view}");
        let in_drawers: usize = box_view["cabinets"][0]["drawers"]
            .as_array()
            .map(|d| {
                d.iter()
                    .map(|d| d["documents"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or_default();
        let in_cabinet = stats["documents_by_state"]["InCabinet"]
            .as_i64()
            .unwrap_or(0) as usize;
        assert_eq!(in_drawers, in_cabinet);
        app.stop().await;
    }
}

#[tokio::test]
async fn readers_see_their_subtree_only_masked_unless_pii() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let (department, ours, theirs) = app.department_with_two_units().await;
        let our_cabinet = app.active_cabinet_of(&ours).await;
        let their_cabinet = app.active_cabinet_of(&theirs).await;
        let our_records = history(&app, &our_cabinet, 2).await;
        let their_records = history(&app, &their_cabinet, 2).await;
        let alarm = their_cabinet
            .alarm("tamper", "door forced", app.now_ms())
            .expect("alarm");
        assert_eq!(app.send(&alarm).await.0, 200);
        app.caught_up().await;

        let sibling = app.token("reader", &ours, &[]).await;
        let their_doc = document_id(&their_records[0]).expect("zjbs");
        let their_person = custody_simulator::generate::person_id(
            &their_records[0].citizen_id_number,
            &their_records[0].chinese_name,
        )
        .expect("rybs");
        for path in [
            format!("/api/v1/documents/{their_doc}"),
            format!("/api/v1/cabinets/{}", their_cabinet.device_serial()),
            format!("/api/v1/persons/{their_person}"),
        ] {
            assert_eq!(app.read(&sibling, &path).await.0, 404, "{path}");
        }
        let (_, list) = app.read(&sibling, "/api/v1/documents").await;
        assert_eq!(
            list["total"],
            our_records.len() as i64,
            "only our documents are listed: {list}"
        );
        let (_, access) = app
            .read(
                &sibling,
                &format!("/api/v1/access-records?zjbs={their_doc}"),
            )
            .await;
        assert_eq!(access["access_records"].as_array().map(Vec::len), Some(0));
        let (_, alerts) = app.read(&sibling, "/api/v1/alerts?kind=device_alarm").await;
        assert_eq!(
            alerts["alerts"].as_array().map(Vec::len),
            Some(0),
            "{alerts}"
        );
        let (_, stats) = app.read(&sibling, "/api/v1/stats").await;
        let counted: i64 = stats["documents_by_state"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or_default();
        assert_eq!(counted, our_records.len() as i64);

        // The department above both sees both, and the alarm.
        let above = app.token("reader", &department, &[]).await;
        assert_eq!(
            app.read(&above, &format!("/api/v1/documents/{their_doc}"))
                .await
                .0,
            200
        );
        let (_, alerts) = app.read(&above, "/api/v1/alerts?kind=device_alarm").await;
        assert_eq!(
            alerts["alerts"].as_array().map(Vec::len),
            Some(1),
            "{alerts}"
        );

        // Masked without pii: first 4 and last 3 of the number, first 6 and last 4 of the ID.
        let our_doc = document_id(&our_records[0]).expect("zjbs");
        let (_, masked) = app
            .read(&sibling, &format!("/api/v1/documents/{our_doc}"))
            .await;
        let number = &our_records[0].document_number;
        let id = &our_records[0].citizen_id_number;
        assert_eq!(
            masked["zjhm"],
            format!("{}**{}", &number[..4], &number[6..])
        );
        assert_eq!(
            masked["holder"]["gmsfhm"],
            format!("{}********{}", &id[..6], &id[14..])
        );
        let audited_before = query_audit_rows(&app).await;
        assert_eq!(
            audited_before, 0,
            "masked reads are not personal-data reads"
        );

        let with_pii = app.token("reader", &ours, &["pii"]).await;
        let (_, clear) = app
            .read(&with_pii, &format!("/api/v1/documents/{our_doc}"))
            .await;
        assert_eq!(clear["zjhm"], number.as_str());
        assert_eq!(clear["holder"]["gmsfhm"], id.as_str());
        assert_eq!(
            query_audit_rows(&app).await,
            1,
            "the pii read is in the query audit log"
        );
        app.stop().await;
    }
}

/// A person never filed, whose passport a cabinet holds, is a person of the read side:
/// `HolderOnly`, named and numbered by the document record, of the unit holding the document,
/// and scoped, masked and audited like any person.
#[tokio::test]
async fn a_holder_never_filed_is_a_person_of_the_read_side() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let (department, ours, theirs) = app.department_with_two_units().await;
        let cabinet = app.active_cabinet_of(&ours).await;
        let record = random_document_record(&mut rand::rng());
        let deposit = cabinet.deposit(&record, &cabinet.drawer(0), DepositKind::New, app.now_ms());
        let (status, body) = app.send(&deposit.expect("deposit")).await;
        assert_eq!(status, 200, "{body}");
        app.caught_up().await;
        let zjbs = document_id(&record).expect("zjbs");
        let rybs =
            custody_simulator::generate::person_id(&record.citizen_id_number, &record.chinese_name)
                .expect("rybs");
        let path = format!("/api/v1/persons/{rybs}");

        let reader = app.token("reader", &ours, &[]).await;
        let (status, person) = app.read(&reader, &path).await;
        assert_eq!(status, 200, "{kind:?}: {person}");
        assert_eq!(person["rybs"], rybs.as_str());
        assert_eq!(person["state"], "HolderOnly");
        assert_eq!(person["xm"], record.chinese_name.as_str());
        let id = &record.citizen_id_number;
        assert_eq!(
            person["gmsfhm"],
            format!("{}********{}", &id[..6], &id[14..]),
            "masked without pii"
        );
        assert_eq!(person["unit"], ours.as_str());
        assert_eq!(person["documents"], serde_json::json!([zjbs]));
        assert_eq!(query_audit_rows(&app).await, 0);

        let with_pii = app.token("reader", &ours, &["pii"]).await;
        let (status, clear) = app.read(&with_pii, &path).await;
        assert_eq!(status, 200, "{clear}");
        assert_eq!(clear["gmsfhm"], id.as_str());
        assert_eq!(query_audit_rows(&app).await, 1, "the pii read is audited");

        // Outside the subtree: as if the person did not exist; above it: seen.
        let sibling = app.token("reader", &theirs, &["pii"]).await;
        assert_eq!(app.read(&sibling, &path).await.0, 404);
        let above = app.token("reader", &department, &[]).await;
        assert_eq!(app.read(&above, &path).await.0, 200);
        // Nobody at all is still nobody.
        let nobody = format!("/api/v1/persons/{}", "0".repeat(64));
        assert_eq!(app.read(&above, &nobody).await.0, 404);
        app.stop().await;
    }
}

pub(crate) async fn query_audit_rows(app: &TestApp) -> i64 {
    use sqlx::Row;
    sqlx::query("SELECT COUNT(*) AS n FROM query_audit")
        .fetch_one(app.store.log.platform().pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n")
}

#[tokio::test]
async fn a_rebuild_under_load_ends_equal_to_a_replay() {
    for kind in StoreKind::ALL {
        let app = Arc::new(TestApp::spawn(kind).await);
        let unit = app.unit().await;
        let cabinet = Arc::new(app.active_cabinet_of(&unit).await);
        let mut records = history(&app, &cabinet, 20).await;
        let token = app.token("reader", &unit, &["pii"]).await;
        let running = Arc::new(AtomicBool::new(true));
        let writer = {
            let (app, cabinet, running) = (app.clone(), cabinet.clone(), running.clone());
            tokio::spawn(async move {
                let mut written = Vec::new();
                while running.load(Ordering::Relaxed) && written.len() < 200 {
                    let record = random_document_record(&mut rand::rng());
                    let deposit = cabinet
                        .deposit(
                            &record,
                            &cabinet.drawer(written.len()),
                            DepositKind::New,
                            app.now_ms(),
                        )
                        .expect("deposit");
                    let (status, body) = app.send(&deposit).await;
                    assert_eq!(status, 200, "a write failed during the rebuild: {body}");
                    written.push(record);
                }
                written
            })
        };
        let reader = {
            let (app, token, running) = (app.clone(), token.clone(), running.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while running.load(Ordering::Relaxed) {
                    let (status, body) = app.read(&token, "/api/v1/documents?per_page=10").await;
                    assert_eq!(status, 200, "a read failed during the rebuild: {body}");
                    reads += 1;
                }
                reads
            })
        };
        let (status, body) = app
            .ops(
                Method::POST,
                "/api/v1/ops/projections/documents/rebuild",
                None,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let generation = loop {
            let (_, body) = app.ops(Method::GET, "/api/v1/ops/projections", None).await;
            let documents = body["projections"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == "documents").cloned())
                .expect("documents projection");
            match documents["rebuild"]["state"].as_str() {
                Some("finished") => break documents["generation"].as_i64(),
                Some("failed") => panic!("rebuild failed: {documents}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        assert_eq!(
            generation,
            Some(2),
            "readers moved to the rebuilt generation"
        );
        running.store(false, Ordering::Relaxed);
        records.extend(writer.await.expect("writer"));
        assert!(reader.await.expect("reader") > 0);
        app.caught_up().await;
        assert_views_equal_replay(&app, &token, &records).await;
        let (_, list) = app.read(&token, "/api/v1/documents?per_page=1").await;
        assert_eq!(
            list["total"],
            records.len() as i64,
            "nothing doubled, nothing missing"
        );
    }
}

#[tokio::test]
async fn the_audit_api_replays_history_and_finds_a_tampered_event() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let records = history(&app, &cabinet, 2).await;
        let zjbs = document_id(&records[1]).expect("zjbs");
        let auditor = app.token("auditor", &unit, &[]).await;
        let (status, history) = app
            .read(&auditor, &format!("/api/v1/audit/documents/{zjbs}/events"))
            .await;
        assert_eq!(status, 200, "{history}");
        let events = history["events"].as_array().expect("events");
        assert_eq!(events.len(), 2, "deposit and lend");
        assert_eq!(events[0]["metadata"]["ei"], cabinet.device_serial());
        assert!(events[0]["metadata"]["envelope_sm3"].is_string());
        assert_eq!(events[1]["metadata"]["prev_hash"], events[0]["hash"]);
        // As of a moment before anything: Unknown; as of now: the lend.
        let (_, before) = app
            .read(
                &auditor,
                &format!("/api/v1/audit/documents/{zjbs}/state?at=2000-01-01T00:00:00%2B08:00"),
            )
            .await;
        assert_eq!(before["state"], "Unknown");
        let now = app.clock.now().to_rfc3339().replace('+', "%2B");
        let (_, current) = app
            .read(
                &auditor,
                &format!("/api/v1/audit/documents/{zjbs}/state?at={now}"),
            )
            .await;
        assert_eq!(current["state"], "Withdrawn");
        assert_eq!(current["version"], 2);

        // The verifier reads the log in commit order up to what is final (every older
        // transaction ended, docs/architecture.md); other databases' transactions on a loaded
        // PostgreSQL can hold that back for a moment.
        app.caught_up().await;
        let (status, verdict) = app.read(&auditor, "/api/v1/audit/verify").await;
        assert_eq!(status, 200);
        assert_eq!(verdict["verified"], true, "{verdict}");
        // Alter one stored event behind the platform's back.
        let sql = match kind {
            StoreKind::Postgres => "UPDATE events SET payload = json_build_object('Cancelled', json_build_object('reason', 'lost', 'proof', null)) WHERE aggregate_id = $1 AND sequence = 1",
            StoreKind::Embedded => "UPDATE events SET payload = json_object('Cancelled', json_object('reason', 'lost', 'proof', NULL)) WHERE aggregate_id = $1 AND sequence = 1",
        };
        sqlx::query(sql)
            .bind(&zjbs)
            .execute(app.store.log.platform().pool())
            .await
            .expect("tamper");
        let (_, verdict) = app.read(&auditor, "/api/v1/audit/verify").await;
        assert_eq!(verdict["verified"], false, "{verdict}");
        assert_eq!(verdict["first_broken"]["aggregate_id"], zjbs.as_str());
        assert_eq!(
            verdict["first_broken"]["sequence"], 2,
            "the event after the altered one no longer links"
        );
        let reader = app.token("reader", &unit, &[]).await;
        assert_eq!(app.read(&reader, "/api/v1/audit/verify").await.0, 403);
        app.stop().await;
    }
}

/// Issue 10 items 3 and 4: the `pii` scope governs auditors exactly as readers, and the role is
/// judged before anything is looked up (a reader learns nothing of what exists).
#[tokio::test]
async fn the_audit_api_masks_without_pii_and_judges_the_role_first() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let records = history(&app, &cabinet, 1).await;
        let record = &records[0];
        let zjbs = document_id(record).expect("zjbs");
        let path = format!("/api/v1/audit/documents/{zjbs}/events");

        let plain = app.token("auditor", &unit, &[]).await;
        let (status, masked) = app.read(&plain, &path).await;
        assert_eq!(status, 200, "{masked}");
        let deposited = &masked["events"][0]["payload"]["Deposited"]["record"];
        let id = deposited["citizen_id"].as_str().expect("citizen_id");
        let number = deposited["number"].as_str().expect("number");
        assert_ne!(id, record.citizen_id_number.as_str(), "masked without pii");
        assert_ne!(
            number,
            record.document_number.as_str(),
            "masked without pii"
        );
        assert!(id.contains('*') && number.contains('*'), "{id} {number}");
        assert!(!masked
            .to_string()
            .contains(record.citizen_id_number.as_str()));

        let with_pii = app.token("auditor", &unit, &["pii"]).await;
        let (status, clear) = app.read(&with_pii, &path).await;
        assert_eq!(status, 200, "{clear}");
        let deposited = &clear["events"][0]["payload"]["Deposited"]["record"];
        assert_eq!(deposited["citizen_id"], record.citizen_id_number.as_str());
        assert_eq!(deposited["number"], record.document_number.as_str());
        // The hash is the stored event's, the same for both.
        assert_eq!(masked["events"][0]["hash"], clear["events"][0]["hash"]);

        // A reader gets the same answer for an existing and a missing document.
        let reader = app.token("reader", &unit, &[]).await;
        let missing = format!("/api/v1/audit/documents/{}/events", "0".repeat(64));
        let (existing_status, existing) = app.read(&reader, &path).await;
        let (missing_status, absent) = app.read(&reader, &missing).await;
        assert_eq!(existing_status, 403, "{existing}");
        assert_eq!(missing_status, 403, "{absent}");
        assert_eq!(existing["error_code"], absent["error_code"]);
        app.stop().await;
    }
}
