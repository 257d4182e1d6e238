//! The custody policy over HTTP, on both stores (SPEC §3.6, docs/custody.md): no cabinet may
//! touch another unit's documents, nor another cabinet's drawer; no unit client may act on
//! another unit's person. Each refusal has its exact status and code, appends nothing, is kept
//! in the rejected-reports log with the touched unit, and is an alert for that unit's readers,
//! whose document stays where it was. Then: a business serial reused with other content is
//! refused, not answered as a duplicate.

use chrono::NaiveDate;
use custody_simulator::cabinet::message_type;
use custody_simulator::exit_entry::FilingAnswer;
use custody_simulator::generate::document_id;
use custody_simulator::unit::{ConsentPurpose, FilingKind, PersonData, TripPlan};
use custody_simulator::{
    AbnormalReason, CancellationReason, DepositKind, SimulatedCabinet, SimulatedExitEntryAdapter,
    Trip,
};
use custody_tests::samples::date;
use custody_tests::{StoreKind, TestApp};
use serde_json::Value;

use crate::exit_entry::{
    assert_accepted, assert_refused, codes, event_count, record, registered_adapter,
    registered_unit_client, rejection_count, rejections,
};

/// Sends `request`, expects `E_NOT_CUSTODIAN` (403), nothing appended, one more rejection kept
/// with `touched` as its unit.
async fn assert_not_custodian(
    app: &TestApp,
    request: custody_protocol::SignedRequest,
    touched: &str,
    case: &str,
) {
    let events = event_count(app).await;
    let kept = rejection_count(app).await;
    let answer = app.send(&request).await;
    assert_refused(&answer, 403, "E_NOT_CUSTODIAN", case);
    assert_eq!(event_count(app).await, events, "{case}: nothing appended");
    assert_eq!(rejection_count(app).await, kept + 1, "{case}: kept");
    let newest = &rejections(app).await[0];
    assert_eq!(newest["error_code"], "E_NOT_CUSTODIAN", "{case}: {newest}");
    assert_eq!(newest["reqid"], request.c.reqid.as_str(), "{case}");
    assert_eq!(newest["touched_unit"], touched, "{case}: {newest}");
}

/// The `E_NOT_CUSTODIAN` alerts a reader of the touched unit sees.
async fn custody_alerts(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app.read(token, "/api/v1/alerts?kind=rejected_report").await;
    assert_eq!(status, 200, "{body}");
    body["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["detail"]["error_code"] == "E_NOT_CUSTODIAN")
        .collect()
}

fn sent(answer: (u16, Value), case: &str) {
    assert_accepted(&answer, case);
}

#[tokio::test]
async fn no_cabinet_touches_another_units_documents() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit_a = app.unit().await;
        let unit_b = app.unit().await;
        let a = app.active_cabinet_of(&unit_a).await;
        let a2 = app.active_cabinet_of(&unit_a).await;
        let b = app.active_cabinet_of(&unit_b).await;
        let reader_a = app.token("reader", &unit_a, &[]).await;
        let reader_b = app.token("reader", &unit_b, &[]).await;

        // A's document in A's drawer, and another of A's out on a lend.
        let held = record();
        let zjbs = document_id(&held).expect("zjbs");
        let now = app.now_ms();
        sent(
            app.send(
                &a.deposit(&held, &a.drawer(0), DepositKind::New, now)
                    .expect("deposit"),
            )
            .await,
            "A deposits",
        );
        let lent = record();
        let lent_id = document_id(&lent).expect("zjbs");
        sent(
            app.send(
                &a.deposit(&lent, &a.drawer(1), DepositKind::New, now)
                    .expect("deposit"),
            )
            .await,
            "A deposits the second",
        );
        sent(
            app.send(
                &a.lend(
                    &lent,
                    &a.drawer(1),
                    date(2099, 12, 24),
                    &Trip::default(),
                    now,
                )
                .expect("lend"),
            )
            .await,
            "A lends the second",
        );

        // Another unit's cabinet, naming its own drawers.
        let own = b.drawer(0);
        let cases: Vec<(&str, custody_protocol::SignedRequest)> = vec![
            (
                "B cancels A's document",
                b.cancellation(&zjbs, CancellationReason::Lost, now)
                    .expect("cancel"),
            ),
            (
                "B lends A's document",
                b.lend(&held, &own, date(2099, 12, 24), &Trip::default(), now)
                    .expect("lend"),
            ),
            (
                "B takes out A's document",
                b.take_out(&held, &own, None, &Trip::default(), now)
                    .expect("take out"),
            ),
            (
                "B reports A's document missing",
                b.abnormal_withdrawal(&held, &own, AbnormalReason::Missing, now)
                    .expect("abnormal"),
            ),
            (
                "B deposits A's document that lies in A's drawer",
                b.deposit(&held, &own, DepositKind::New, now)
                    .expect("deposit"),
            ),
            (
                "B takes in A's lent document as a return",
                b.deposit(&lent, &own, DepositKind::Return, now)
                    .expect("return"),
            ),
            (
                "B cancels A's lent document",
                b.cancellation(&lent_id, CancellationReason::Lost, now)
                    .expect("cancel"),
            ),
        ];
        let refused = cases.len();
        for (case, request) in cases {
            assert_not_custodian(&app, request, &unit_a, case).await;
        }
        // Another cabinet of the same unit does not withdraw from a drawer not its own.
        assert_not_custodian(
            &app,
            a2.take_out(&held, &a2.drawer(0), None, &Trip::default(), now)
                .expect("take out"),
            &unit_a,
            "A's other cabinet takes out of A's first cabinet",
        )
        .await;

        // A's documents are where they were, and A's reader still sees them.
        app.caught_up().await;
        let (status, view) = app
            .read(&reader_a, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "InCabinet");
        assert_eq!(view["unit"], unit_a.as_str());
        assert_eq!(view["location"]["sbxlh"], a.device_serial());
        let (status, view) = app
            .read(&reader_a, &format!("/api/v1/documents/{lent_id}"))
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "Withdrawn");
        let (status, _) = app
            .read(&reader_b, &format!("/api/v1/documents/{zjbs}"))
            .await;
        assert_eq!(status, 404, "B's reader does not see A's document");

        // Every refusal is an alert for A's readers.
        let alerts = custody_alerts(&app, &reader_a).await;
        assert_eq!(alerts.len(), refused + 1, "{alerts:?}");
        assert!(
            alerts.iter().all(|a| a["unit"] == unit_a.as_str()),
            "{alerts:?}"
        );

        // A's own cabinet still does what it may.
        sent(
            app.send(
                &a.take_out(&held, &a.drawer(0), None, &Trip::default(), app.now_ms())
                    .expect("take out"),
            )
            .await,
            "A takes out its own document",
        );
        app.stop().await;
    }
}

fn trip() -> TripPlan {
    TripPlan {
        destination: "HKG".into(),
        departure: date(2026, 12, 1),
        return_date: date(2026, 12, 10),
        reason: "探亲".into(),
        document_type: "513".into(),
        approved_on: date(2026, 11, 20),
    }
}

#[tokio::test]
async fn no_unit_client_acts_on_another_units_person() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit_a = app.unit().await;
        let unit_b = app.unit().await;
        let client_a = registered_unit_client(&app, &unit_a).await;
        let client_b = registered_unit_client(&app, &unit_b).await;
        let reader_a = app.token("reader", &unit_a, &[]).await;
        let staff = PersonData::random();
        let rybs = staff.person_id().expect("rybs");
        let now = app.now_ms();
        let filing = new_filing(&client_a, &staff, now);
        let answer = app.send(&filing).await;
        assert_accepted(&answer, "A files its person");
        assert_eq!(codes(&answer), ["0"]);

        // B files A's person as new: refused for that person, kept, nothing appended.
        let events = event_count(&app).await;
        let kept = rejection_count(&app).await;
        let answer = app.send(&new_filing(&client_b, &staff, now)).await;
        assert_accepted(&answer, "the envelope is fine");
        assert_eq!(codes(&answer), ["E_NOT_CUSTODIAN"]);
        assert_eq!(event_count(&app).await, events);
        assert_eq!(rejection_count(&app).await, kept + 1);
        assert_eq!(rejections(&app).await[0]["touched_unit"], unit_a.as_str());

        // B approves a trip of A's person, or writes them a consent letter.
        assert_not_custodian(
            &app,
            client_b
                .travel_approval(&rybs, &trip(), now)
                .expect("approval"),
            &unit_a,
            "B approves a trip of A's person",
        )
        .await;
        let letter = client_b
            .consent_letter_data(
                &rybs,
                None,
                ConsentPurpose::NewDocument,
                "414",
                NaiveDate::from_ymd_opt(2026, 11, 20).expect("date"),
                now,
            )
            .expect("letter");
        assert_not_custodian(
            &app,
            client_b.sign("sjsb-tyh", &letter, now).expect("sign"),
            &unit_a,
            "B writes a consent letter for A's person",
        )
        .await;
        let alerts = custody_alerts(&app, &reader_a).await;
        assert_eq!(alerts.len(), 3, "{alerts:?}");

        // Once the exit-entry administration refused A's filing, the person is nobody's.
        let adapter = registered_adapter(&app).await;
        let refused = adapter
            .filing_results(
                &filing_serial(&filing),
                &[SimulatedExitEntryAdapter::answer(
                    &rybs,
                    FilingKind::New,
                    FilingAnswer::Refused,
                    "",
                )],
                now,
            )
            .expect("answers");
        assert_accepted(&app.send(&refused).await, "refused");
        let answer = app.send(&new_filing(&client_b, &staff, now)).await;
        assert_eq!(codes(&answer), ["0"], "{}", answer.1);
        app.stop().await;
    }
}

/// A signed filing list naming `who` as a new person of `client`'s unit.
fn new_filing(
    client: &custody_simulator::SimulatedUnitClient,
    who: &PersonData,
    now: i64,
) -> custody_protocol::SignedRequest {
    let item = client
        .filing_item(FilingKind::New, who, "科员")
        .expect("item");
    client.filing_list(vec![item], now).expect("filing list")
}

fn filing_serial(request: &custody_protocol::SignedRequest) -> String {
    let data: Value = request.business_data().expect("bdata");
    data["bbywlsh"].as_str().expect("bbywlsh").to_string()
}

/// A deposit report of `cabinet` under `serial`, in drawer `index`.
fn deposit_under(
    cabinet: &SimulatedCabinet,
    record: &custody_protocol::DocumentRecord,
    index: usize,
    serial: Option<&str>,
    now: i64,
) -> (String, custody_protocol::SignedRequest) {
    let mut data = cabinet
        .custody_report_data(
            custody_simulator::CustodyOperation::DepositNew,
            record,
            &cabinet.drawer(index),
            now,
        )
        .expect("report");
    if let Some(serial) = serial {
        data.business_serial = serial.to_string();
    }
    let request = cabinet
        .sign(message_type::CUSTODY, &data, now)
        .expect("sign");
    (data.business_serial, request)
}

#[tokio::test]
async fn a_serial_reused_with_other_content_is_refused() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let document = record();
        let now = app.now_ms();
        let (serial, first) = deposit_under(&cabinet, &document, 0, None, now);
        sent(app.send(&first).await, "first");
        let events = event_count(&app).await;

        // The same content again (the record sealed afresh, a new reqid): a duplicate.
        let (_, again) = deposit_under(&cabinet, &document, 0, Some(&serial), now);
        let answer = app.send(&again).await;
        assert_accepted(&answer, "same content");
        assert_eq!(answer.1["duplicate"], true);

        // Another drawer under the same serial: refused and kept, the first stands.
        let kept = rejection_count(&app).await;
        let (_, other) = deposit_under(&cabinet, &document, 1, Some(&serial), now);
        let answer = app.send(&other).await;
        assert_refused(&answer, 409, "E_SERIAL_REUSED", "another drawer");
        assert_eq!(answer.1["duplicate"], false);
        assert_eq!(event_count(&app).await, events, "nothing appended");
        assert_eq!(rejection_count(&app).await, kept + 1, "kept");
        let stored: custody_domain::document::Document = app
            .state
            .commands
            .load(&document_id(&document).expect("zjbs"))
            .await
            .expect("load");
        let drawer = stored.location.expect("in a drawer").drawer;
        assert_eq!(
            (drawer.row, drawer.column),
            (cabinet.drawer(0).row, cabinet.drawer(0).column)
        );

        // Another optype under it too.
        let mut data = cabinet
            .custody_report_data(
                custody_simulator::CustodyOperation::DepositReturn,
                &document,
                &cabinet.drawer(0),
                now,
            )
            .expect("report");
        data.business_serial = serial.clone();
        let answer = app
            .send(
                &cabinet
                    .sign(message_type::CUSTODY, &data, now)
                    .expect("sign"),
            )
            .await;
        assert_refused(&answer, 409, "E_SERIAL_REUSED", "another optype");
        app.stop().await;
    }
}
