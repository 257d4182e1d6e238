//! The exit-entry adapter's feeds (`sjts-crjjl`, `sjts-bzjg`) end to end over HTTP, signed by the
//! simulated adapter, on both stores. Filing results (`sjts-bbjg`) are in unit_messages.rs, with
//! the filing lists they answer.

use chrono::Duration;
use custody_domain::document::{Anomaly, Document, DocumentEvent, DocumentState};
use custody_protocol::{DocumentRecord, SignedRequest};
use custody_simulator::exit_entry::{CrossingRecordData, Direction};
use custody_simulator::generate::{document_id, random_document_record};
use custody_simulator::{
    CancellationReason, DepositKind, SimulateError, SimulatedCabinet, SimulatedExitEntryAdapter,
    SimulatedUnitClient, Trip,
};
use custody_tests::samples::date;
use custody_tests::{StoreKind, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

pub(crate) fn assert_accepted(answer: &(u16, Value), case: &str) {
    assert_eq!(answer.0, 200, "{case}: {}", answer.1);
    assert_eq!(answer.1["status"], true, "{case}: {}", answer.1);
    assert_eq!(answer.1["error_code"], "0", "{case}: {}", answer.1);
}

pub(crate) fn assert_refused(answer: &(u16, Value), status: u16, code: &str, case: &str) {
    assert_eq!(answer.0, status, "{case}: {}", answer.1);
    assert_eq!(answer.1["error_code"], code, "{case}: {}", answer.1);
    assert_eq!(answer.1["status"], false, "{case}");
}

/// One item's result of a list answer: key, status, error code, duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItemResult {
    pub key: String,
    pub status: bool,
    pub error_code: String,
    pub duplicate: bool,
}

pub(crate) fn results(answer: &(u16, Value)) -> Vec<ItemResult> {
    answer.1["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {}", answer.1))
        .iter()
        .map(|r| ItemResult {
            key: r["key"].as_str().unwrap_or_default().to_string(),
            status: r["status"].as_bool().unwrap_or_default(),
            error_code: r["error_code"].as_str().unwrap_or_default().to_string(),
            duplicate: r["duplicate"].as_bool().unwrap_or_default(),
        })
        .collect()
}

/// The error codes of a list answer's results, in order (`"0"` for an applied item).
pub(crate) fn codes(answer: &(u16, Value)) -> Vec<String> {
    results(answer).into_iter().map(|r| r.error_code).collect()
}

pub(crate) async fn registered_adapter(app: &TestApp) -> SimulatedExitEntryAdapter {
    let adapter = SimulatedExitEntryAdapter::random().expect("adapter");
    let body = serde_json::to_value(adapter.registration()).expect("registration JSON");
    let (status, answer) = app
        .ops(Method::POST, "/api/v1/ops/senders", Some(body))
        .await;
    assert_eq!(status, 201, "register the exit-entry adapter: {answer}");
    adapter
}

pub(crate) async fn registered_unit_client(app: &TestApp, unit: &str) -> SimulatedUnitClient {
    let client =
        SimulatedUnitClient::new(unit, &app.platform_certificate_pem()).expect("unit client");
    let body = serde_json::to_value(client.registration()).expect("registration JSON");
    let (status, answer) = app
        .ops(Method::POST, "/api/v1/ops/senders", Some(body))
        .await;
    assert_eq!(status, 201, "register the unit client: {answer}");
    client
}

pub(crate) fn record() -> DocumentRecord {
    random_document_record(&mut rand::rng())
}

pub(crate) async fn document(app: &TestApp, record: &DocumentRecord) -> Document {
    let zjbs = document_id(record).expect("zjbs");
    app.state.commands.load(&zjbs).await.expect("load document")
}

pub(crate) async fn document_events(app: &TestApp, record: &DocumentRecord) -> Vec<DocumentEvent> {
    let zjbs = document_id(record).expect("zjbs");
    app.store
        .log
        .opened_events_of("Document", &zjbs)
        .await
        .expect("events")
        .into_iter()
        .map(|e| serde_json::from_value(e.payload).expect("document event"))
        .collect()
}

pub(crate) async fn event_count(app: &TestApp) -> i64 {
    app.store.log.count().await.expect("count events")
}

pub(crate) async fn rejection_count(app: &TestApp) -> i64 {
    app.store
        .log
        .platform()
        .count_rejections()
        .await
        .expect("count rejections")
}

/// The newest kept rejections, as the ops API lists them.
pub(crate) async fn rejections(app: &TestApp) -> Vec<Value> {
    let (status, body) = app.ops(Method::GET, "/api/v1/ops/rejections", None).await;
    assert_eq!(status, 200, "{body}");
    body["rejections"].as_array().cloned().unwrap_or_default()
}

/// The envelope kept with a listed rejection, fetched by its id (lists carry no bodies).
pub(crate) async fn kept_envelope(app: &TestApp, listed: &Value) -> Value {
    assert!(listed.get("envelope").is_none(), "lists carry no bodies");
    let path = format!("/api/v1/ops/rejections/{}", listed["id"]);
    let (status, body) = app.ops(Method::GET, &path, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], listed["id"]);
    body["envelope"].clone()
}

pub(crate) fn posted(request: &SignedRequest) -> Value {
    serde_json::from_str(&request.to_json().expect("json")).expect("json")
}

/// What the simulators' request builders give.
pub(crate) type Built = Result<SignedRequest, SimulateError>;

/// Sends a request a simulator built, insisting that it is accepted.
pub(crate) async fn send_ok(app: &TestApp, request: Built, case: &str) -> Value {
    let answer = app.send(&request.expect("request")).await;
    assert_accepted(&answer, case);
    answer.1
}

fn crossing_of(
    adapter: &SimulatedExitEntryAdapter,
    record: &DocumentRecord,
    direction: Direction,
    time_millis: i64,
) -> CrossingRecordData {
    adapter
        .crossing(record, direction, time_millis, "310000", "HKG")
        .expect("crossing")
}

#[tokio::test]
async fn crossings_move_documents_flag_anomalies_and_are_all_kept() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let adapter = registered_adapter(&app).await;
        let now = app.now_ms();
        let today = app.clock.now().date_naive();

        let lent = record();
        let kept = record();
        let unknown = record();
        let cancelled = record();
        send_ok(
            &app,
            cabinet.deposit(&lent, &cabinet.drawer(0), DepositKind::New, now),
            "deposit lent",
        )
        .await;
        send_ok(
            &app,
            cabinet.lend(
                &lent,
                &cabinet.drawer(0),
                today + Duration::days(10),
                &Trip::default(),
                now,
            ),
            "lend",
        )
        .await;
        send_ok(
            &app,
            cabinet.deposit(&kept, &cabinet.drawer(1), DepositKind::New, now),
            "deposit kept",
        )
        .await;
        send_ok(
            &app,
            cabinet.deposit(&cancelled, &cabinet.drawer(2), DepositKind::New, now),
            "deposit cancelled",
        )
        .await;
        send_ok(
            &app,
            cabinet.cancellation(
                &document_id(&cancelled).expect("zjbs"),
                CancellationReason::Lost,
                now,
            ),
            "cancel",
        )
        .await;

        let crossings = vec![
            crossing_of(&adapter, &lent, Direction::Exit, now - 3_600_000),
            crossing_of(&adapter, &lent, Direction::Entry, now - 60_000),
            crossing_of(&adapter, &kept, Direction::Exit, now - 60_000),
            crossing_of(&adapter, &unknown, Direction::Entry, now - 60_000),
            crossing_of(&adapter, &cancelled, Direction::Exit, now - 60_000),
        ];
        let answer = app
            .send(&adapter.crossings(&crossings, now).expect("crossings"))
            .await;
        assert_accepted(&answer, "crossings");
        assert_eq!(answer.1["duplicate"], false);
        let keys: Vec<String> = results(&answer).into_iter().map(|r| r.key).collect();
        let expected: Vec<String> = crossings.iter().map(|c| c.record_id.clone()).collect();
        assert_eq!(keys, expected, "one result per record, keyed by jlbh");
        assert_eq!(codes(&answer), ["0"; 5]);

        // Entry while Withdrawn: due back now.
        assert_eq!(
            document(&app, &lent).await.state,
            DocumentState::AwaitingReturn
        );
        assert_eq!(document(&app, &kept).await.state, DocumentState::InCabinet);
        assert_eq!(document(&app, &unknown).await.state, DocumentState::Unknown);
        assert_eq!(
            document(&app, &cancelled).await.state,
            DocumentState::Cancelled
        );

        let anomaly_of = |events: &[DocumentEvent]| -> Vec<Option<Anomaly>> {
            events
                .iter()
                .filter_map(|e| match e {
                    DocumentEvent::BorderCrossed(c) => Some(c.anomaly),
                    _ => None,
                })
                .collect()
        };
        let history = document_events(&app, &lent).await;
        assert_eq!(history.len(), 4, "deposit, lend and both crossings");
        assert_eq!(anomaly_of(&history), [None, None]);
        assert_eq!(
            anomaly_of(&document_events(&app, &kept).await),
            [Some(Anomaly::ExitWhileInCabinet)]
        );
        assert_eq!(
            anomaly_of(&document_events(&app, &unknown).await),
            [Some(Anomaly::CrossingOfUnknownDocument)]
        );
        // Even a cancelled document's crossing is kept: the administration is the authority.
        assert_eq!(anomaly_of(&document_events(&app, &cancelled).await), [None]);

        match &history[3] {
            DocumentEvent::BorderCrossed(c) => {
                assert_eq!(c.record_id, crossings[1].record_id);
                assert_eq!(c.port, "310000");
                assert_eq!(c.country, "HKG");
            }
            other => panic!("expected a crossing, got {other:?}"),
        }
        let stored = app
            .store
            .log
            .events_of("Document", &document_id(&lent).expect("zjbs"))
            .await
            .expect("events");
        let metadata = &stored[3].metadata;
        assert_eq!(metadata["ei"], adapter.ei());
        assert_eq!(metadata["ywlsh"], crossings[1].record_id.as_str());
        assert_eq!(
            metadata["idempotency_key"],
            format!("crjjl:{}", crossings[1].record_id)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn each_crossing_is_idempotent_and_one_bad_record_blocks_nothing() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let adapter = registered_adapter(&app).await;
        let now = app.now_ms();
        let kept = record();
        send_ok(
            &app,
            cabinet.deposit(&kept, &cabinet.drawer(0), DepositKind::New, now),
            "deposit",
        )
        .await;
        let events_before = event_count(&app).await;
        let rejections_before = rejection_count(&app).await;

        let good = crossing_of(&adapter, &kept, Direction::Exit, now);
        let mut bad_type = crossing_of(&adapter, &record(), Direction::Exit, now);
        bad_type.document_type = "999".into();
        let other_good = crossing_of(&adapter, &record(), Direction::Entry, now);
        let mut bad_country = crossing_of(&adapter, &record(), Direction::Exit, now);
        bad_country.country = "china".into();
        let mut no_direction =
            serde_json::to_value(crossing_of(&adapter, &record(), Direction::Exit, now))
                .expect("json");
        no_direction
            .as_object_mut()
            .expect("object")
            .remove("crjlx");
        let list = json!({"records": [good, bad_type, other_good, no_direction, bad_country]});
        let request = adapter
            .sign("sjts-crjjl", &list, now)
            .expect("sign crossings");
        let answer = app.send(&request).await;
        assert_accepted(&answer, "a list with bad records");
        assert_eq!(
            codes(&answer),
            [
                "0",
                "E_INVALID_FIELD",
                "0",
                "E_MALFORMED",
                "E_INVALID_FIELD"
            ]
        );
        let first = results(&answer);
        assert_eq!(first[1].key, bad_type.record_id);
        assert!(!first[1].status && first[0].status && first[2].status);
        assert_eq!(
            event_count(&app).await,
            events_before + 2,
            "the good records are applied"
        );

        // Every refused item is kept, with the whole envelope and its key in the message.
        assert_eq!(rejection_count(&app).await, rejections_before + 3);
        let kept_rejections = rejections(&app).await;
        let bad_type_kept = kept_rejections
            .iter()
            .find(|r| {
                r["error_msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&bad_type.record_id)
            })
            .expect("the refused record is kept");
        assert_eq!(bad_type_kept["error_code"], "E_INVALID_FIELD");
        assert_eq!(bad_type_kept["http_status"], 422);
        assert_eq!(bad_type_kept["authenticated"], true);
        assert_eq!(bad_type_kept["mstype"], "sjts-crjjl");
        assert_eq!(kept_envelope(&app, bad_type_kept).await, posted(&request));

        // The same list again, in another request: applied records are duplicates.
        let again = app
            .send(&adapter.sign_again(&request, app.now_ms()).expect("re-sign"))
            .await;
        assert_accepted(&again, "the list again");
        let second = results(&again);
        assert!(second[0].duplicate && second[2].duplicate);
        assert_eq!(codes(&again)[1], "E_INVALID_FIELD");
        assert_eq!(
            again.1["duplicate"], false,
            "not every item was a duplicate"
        );
        assert_eq!(event_count(&app).await, events_before + 2);

        // One record repeated in a new list with a new one: one event more, not two.
        let fresh = crossing_of(&adapter, &kept, Direction::Entry, now);
        let mixed = app
            .send(
                &adapter
                    .crossings(&[good.clone(), fresh], app.now_ms())
                    .expect("crossings"),
            )
            .await;
        assert_accepted(&mixed, "repeated and fresh");
        let mixed = results(&mixed);
        assert!(mixed[0].duplicate && !mixed[1].duplicate && mixed[1].status);
        assert_eq!(event_count(&app).await, events_before + 3);

        // A list of only duplicates says so.
        let all_again = app
            .send(
                &adapter
                    .crossings(std::slice::from_ref(&good), app.now_ms())
                    .expect("crossings"),
            )
            .await;
        assert_eq!(all_again.1["duplicate"], true);

        // A record id reused for another document is refused, on its own.
        let mut reused = crossing_of(&adapter, &record(), Direction::Exit, now);
        reused.record_id = good.record_id.clone();
        let answer = app
            .send(
                &adapter
                    .crossings(&[reused], app.now_ms())
                    .expect("crossings"),
            )
            .await;
        assert_eq!(codes(&answer), ["E_SERIAL_REUSED"]);
        assert_eq!(event_count(&app).await, events_before + 3);
        app.stop().await;
    }
}

#[tokio::test]
async fn issued_documents_await_their_first_deposit() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let adapter = registered_adapter(&app).await;
        let now = app.now_ms();
        let issued = record();
        let entry = adapter
            .issued(&issued, date(2026, 11, 1))
            .expect("issued record");
        let request = adapter
            .issued_documents(std::slice::from_ref(&entry), now)
            .expect("issued documents");
        let answer = app.send(&request).await;
        assert_accepted(&answer, "issued");
        assert_eq!(codes(&answer), ["0"]);
        let state = document(&app, &issued).await;
        assert_eq!(state.state, DocumentState::AwaitingReturn);
        assert_eq!(
            state.number.as_ref().map(|n| n.as_str()),
            Some(issued.document_number.as_str())
        );
        assert_eq!(
            state.holder.as_ref().map(|h| h.to_string()),
            Some(entry.person_id.clone())
        );
        match &document_events(&app, &issued).await[0] {
            DocumentEvent::IssuanceConfirmed(e) => {
                assert_eq!(e.record_id, entry.record_id);
                assert_eq!(e.issued_on, date(2026, 11, 1));
            }
            other => panic!("expected IssuanceConfirmed, got {other:?}"),
        }

        // Pushed again in another request: one event.
        let again = app
            .send(&adapter.sign_again(&request, app.now_ms()).expect("re-sign"))
            .await;
        assert!(results(&again)[0].duplicate);
        assert_eq!(document_events(&app, &issued).await.len(), 1);

        // Its first deposit.
        send_ok(
            &app,
            cabinet.deposit(&issued, &cabinet.drawer(0), DepositKind::New, now),
            "first deposit",
        )
        .await;
        assert_eq!(
            document(&app, &issued).await.state,
            DocumentState::InCabinet
        );

        // A new issuance of a document in a cabinet is illegal; a backwards validity invalid;
        // the good record beside them is applied.
        let late = adapter
            .issued(&issued, date(2026, 11, 2))
            .expect("issued record");
        let mut backwards = adapter
            .issued(&record(), date(2026, 11, 1))
            .expect("issued record");
        backwards.valid_until = "20261031".into();
        let good = record();
        let good_entry = adapter
            .issued(&good, date(2026, 11, 1))
            .expect("issued record");
        let rejections_before = rejection_count(&app).await;
        let answer = app
            .send(
                &adapter
                    .issued_documents(&[late, backwards, good_entry], app.now_ms())
                    .expect("issued documents"),
            )
            .await;
        assert_accepted(&answer, "mixed issuances");
        assert_eq!(
            codes(&answer),
            ["E_ILLEGAL_TRANSITION", "E_INVALID_FIELD", "0"]
        );
        assert_eq!(
            document(&app, &good).await.state,
            DocumentState::AwaitingReturn
        );
        assert_eq!(rejection_count(&app).await, rejections_before + 2);
        app.stop().await;
    }
}

#[tokio::test]
async fn exit_entry_refusals() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let cabinet = app.active_cabinet().await;
        let adapter = registered_adapter(&app).await;
        let client = registered_unit_client(&app, cabinet.unit_credit_code()).await;
        let stranger = SimulatedExitEntryAdapter::random().expect("adapter");
        let now = app.now_ms();
        let events_before = event_count(&app).await;
        let rejections_before = rejection_count(&app).await;
        let one = vec![crossing_of(&adapter, &record(), Direction::Exit, now)];

        // Not registered.
        let answer = app
            .send(&stranger.crossings(&one, now).expect("crossings"))
            .await;
        assert_refused(&answer, 401, "E_SENDER_UNKNOWN", "unknown adapter");

        // Registered, but not as the exit-entry adapter.
        let as_cabinet = signed_by_cabinet(&cabinet, &one, now);
        assert_refused(
            &app.send(&as_cabinet).await,
            401,
            "E_SENDER_UNKNOWN",
            "a cabinet pushing crossings",
        );
        let as_unit = client
            .sign("sjts-crjjl", &json!({ "records": one }), now)
            .expect("sign");
        assert_refused(
            &app.send(&as_unit).await,
            401,
            "E_SENDER_UNKNOWN",
            "a unit client pushing crossings",
        );

        // More than 1,000 records: the whole list is refused, nothing applied.
        let many: Vec<CrossingRecordData> = (0..1001)
            .map(|_| crossing_of(&adapter, &record(), Direction::Exit, now))
            .collect();
        let answer = app
            .send(&adapter.crossings(&many, now).expect("crossings"))
            .await;
        assert_refused(&answer, 422, "E_INVALID_FIELD", "1,001 records");
        assert!(answer.1["error_msg"]
            .as_str()
            .unwrap_or_default()
            .contains("1000"));

        // A list that is not a list.
        let answer = app
            .send(
                &adapter
                    .sign("sjts-crjjl", &json!({"records": "none"}), now)
                    .expect("sign"),
            )
            .await;
        assert_refused(&answer, 400, "E_MALFORMED", "records not a list");

        assert_eq!(event_count(&app).await, events_before, "nothing appended");
        assert_eq!(rejection_count(&app).await, rejections_before + 5);
        app.stop().await;
    }
}

/// Crossings signed with a cabinet's key under its own `ei`.
fn signed_by_cabinet(
    cabinet: &SimulatedCabinet,
    records: &[CrossingRecordData],
    time_millis: i64,
) -> SignedRequest {
    cabinet
        .sign("sjts-crjjl", &json!({ "records": records }), time_millis)
        .expect("sign")
}
