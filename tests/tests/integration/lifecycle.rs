//! The lifecycle processes end to end over HTTP, signed by the simulators, on both stores:
//! a lend whose return date passes is marked by the scheduler, reminded, listed as overdue (read
//! API and the cabinet's `sjfk-cjxx`) and closed by its return; an entry before the return date
//! opens an `entered` reminder; a revoked filing cancels all the person's documents.

use chrono::Duration;
use custody_commands::ManualClock;
use custody_domain::document::{CancellationReason as Reason, DocumentEvent};
use custody_domain::reminder::{CloseReason, Reminder, ReminderState};
use custody_protocol::DocumentRecord;
use custody_simulator::exit_entry::{Direction, FilingAnswer};
use custody_simulator::generate::{document_id, person_id};
use custody_simulator::unit::{FilingKind, PersonData};
use custody_simulator::{
    CancellationReason, DepositKind, SimulatedCabinet, SimulatedExitEntryAdapter,
    SimulatedUnitClient, Trip,
};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::exit_entry::{
    assert_accepted, assert_refused, document_events, record, registered_adapter,
    registered_unit_client, results, send_ok,
};

/// Lets the process managers handle everything committed so far.
pub(crate) async fn processes_caught_up(app: &TestApp) {
    app.state
        .processes
        .catch_up()
        .await
        .expect("the process managers catch up");
}

/// `POST /api/v1/ops/scheduler/run`: the answer's return-date and reminder counts.
pub(crate) async fn run_scheduler(app: &TestApp) -> Value {
    let (status, body) = app
        .ops(Method::POST, "/api/v1/ops/scheduler/run", None)
        .await;
    assert_eq!(status, 200, "scheduler run: {body}");
    body
}

/// `GET /api/v1/overdue` with `token`.
pub(crate) async fn overdue(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app.read(token, "/api/v1/overdue").await;
    assert_eq!(status, 200, "overdue: {body}");
    body["overdue"].as_array().cloned().unwrap_or_default()
}

/// The cabinet's `sjfk-cjxx`: its `cjxx` list.
pub(crate) async fn pull_reminders(app: &TestApp, cabinet: &SimulatedCabinet) -> Vec<Value> {
    let request = cabinet
        .sign(
            "sjfk-cjxx",
            &json!({"orgid": cabinet.unit_credit_code(), "devid": cabinet.device_serial()}),
            app.now_ms(),
        )
        .expect("sign sjfk-cjxx");
    let answer = app.send(&request).await;
    assert_accepted(&answer, "sjfk-cjxx");
    answer.1["cjxx"].as_array().cloned().expect("cjxx")
}

async fn document_state(app: &TestApp, token: &str, zjbs: &str) -> String {
    let (status, body) = app.read(token, &format!("/api/v1/documents/{zjbs}")).await;
    assert_eq!(status, 200, "document {zjbs}: {body}");
    body["state"].as_str().unwrap_or_default().to_string()
}

fn holder(record: &DocumentRecord) -> String {
    person_id(&record.citizen_id_number, &record.chinese_name).expect("rybs")
}

#[tokio::test]
async fn an_overdue_lend_is_marked_reminded_listed_and_closed_by_its_return() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-23T09:00:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let reader = app.token("reader", &unit, &[]).await;
        let elsewhere = app.unit().await;
        let outsider = app.token("reader", &elsewhere, &[]).await;
        let lent = record();
        let zjbs = document_id(&lent).expect("zjbs");
        let drawer = cabinet.drawer(0);
        send_ok(
            &app,
            cabinet.deposit(&lent, &drawer, DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
        send_ok(
            &app,
            cabinet.lend(
                &lent,
                &drawer,
                date(2026, 11, 25),
                &Trip::default(),
                app.now_ms(),
            ),
            "lend",
        )
        .await;

        // On the planned return date itself the document is not due yet.
        app.clock.set(time("2026-11-25T23:59:59+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(run["return_dates"]["marked"], 0, "{run}");
        assert!(overdue(&app, &reader).await.is_empty());

        // The day after, the scheduler marks it; at 09:00 no reminder goes out yet.
        app.clock.set(time("2026-11-26T09:00:00+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(run["return_dates"]["marked"], 1, "{run}");
        assert_eq!(run["reminders"]["sent"], 0, "{run}");
        app.caught_up().await;
        assert_eq!(document_state(&app, &reader, &zjbs).await, "AwaitingReturn");
        let listed = overdue(&app, &reader).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["zjbs"], zjbs.as_str());
        assert_eq!(listed[0]["rybs"], holder(&lent).as_str());
        assert_eq!(listed[0]["zjlx"], lent.document_type.as_str());
        assert_eq!(listed[0]["unit"], unit.as_str());
        assert_eq!(listed[0]["kind"], "overdue");
        assert_eq!(listed[0]["state"], "Pending");
        assert_eq!(listed[0]["planned_return"], "2026-11-25");
        assert_eq!(listed[0]["overdue_days"], 1);
        assert_eq!(
            pull_reminders(&app, &cabinet).await,
            [
                json!({"zjbs": zjbs, "rybs": holder(&lent), "zjlx": lent.document_type,
                    "yqts": 1, "cjlx": "overdue"})
            ]
        );
        // Another unit's reader sees none of it.
        assert!(overdue(&app, &outsider).await.is_empty());

        // Two days later, inside the window: one reminder to the unit's administrators.
        app.clock.set(time("2026-11-28T10:00:00+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(run["reminders"]["sent"], 1, "{run}");
        let listed = overdue(&app, &reader).await;
        assert_eq!(listed[0]["overdue_days"], 3);
        assert_eq!(listed[0]["state"], "Reminding");
        assert_eq!(listed[0]["sent"], 1);
        assert_eq!(pull_reminders(&app, &cabinet).await[0]["yqts"], 3);
        // No webhook is configured: the notification stays queued, and visible.
        let (status, outbox) = app
            .ops(Method::GET, "/api/v1/ops/notifications?pending=true", None)
            .await;
        assert_eq!(status, 200, "{outbox}");
        assert_eq!(outbox["webhook_configured"], false);
        let queued = outbox["notifications"].as_array().expect("notifications");
        assert_eq!(queued.len(), 1, "{outbox}");
        assert_eq!(queued[0]["status"], "queued");
        let payload = &queued[0]["payload"];
        assert_eq!(payload["document"], zjbs.as_str());
        assert_eq!(payload["kind"], "overdue");
        assert_eq!(payload["overdue_days"], 3);
        let administrators: Vec<Value> = cabinet
            .activation_data()
            .administrators
            .iter()
            .map(|a| json!({"account": a.account, "person": a.person_id}))
            .collect();
        assert_eq!(payload["recipients"], Value::Array(administrators));

        // The holder brings it back: the reminder closes and the lists empty.
        send_ok(
            &app,
            cabinet.deposit(&lent, &drawer, DepositKind::Return, app.now_ms()),
            "return",
        )
        .await;
        processes_caught_up(&app).await;
        assert!(overdue(&app, &reader).await.is_empty());
        assert!(pull_reminders(&app, &cabinet).await.is_empty());
        let id = listed[0]["reminder"].as_str().expect("reminder id");
        let reminder: Reminder = app.state.commands.load(id).await.expect("reminder");
        assert_eq!(reminder.state, ReminderState::Closed);
        assert_eq!(
            reminder.closed.map(|c| c.reason),
            Some(CloseReason::Deposited)
        );
        app.clock.advance(Duration::days(1));
        let run = run_scheduler(&app).await;
        assert_eq!(run["return_dates"]["marked"], 0, "{run}");
        assert_eq!(run["reminders"]["sent"], 0, "{run}");
        app.caught_up().await;
        assert_eq!(document_state(&app, &reader, &zjbs).await, "InCabinet");
        app.stop().await;
    }
}

#[tokio::test]
async fn an_entry_before_the_return_date_opens_an_entered_reminder() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-23T09:00:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let adapter = registered_adapter(&app).await;
        let reader = app.token("reader", &unit, &[]).await;
        let lent = record();
        let zjbs = document_id(&lent).expect("zjbs");
        let drawer = cabinet.drawer(0);
        send_ok(
            &app,
            cabinet.deposit(&lent, &drawer, DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
        send_ok(
            &app,
            cabinet.lend(
                &lent,
                &drawer,
                date(2026, 12, 10),
                &Trip::default(),
                app.now_ms(),
            ),
            "lend",
        )
        .await;
        cross(&app, &adapter, &lent, Direction::Exit).await;
        processes_caught_up(&app).await;
        assert!(overdue(&app, &reader).await.is_empty(), "out, not due yet");

        app.clock.set(time("2026-11-30T15:00:00+08:00"));
        cross(&app, &adapter, &lent, Direction::Entry).await;
        processes_caught_up(&app).await;
        app.caught_up().await;
        assert_eq!(document_state(&app, &reader, &zjbs).await, "AwaitingReturn");
        let listed = overdue(&app, &reader).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0]["kind"], "entered");
        // Not overdue: 0, never a negative count of days.
        assert_eq!(listed[0]["overdue_days"], 0);
        assert_eq!(
            pull_reminders(&app, &cabinet).await,
            [
                json!({"zjbs": zjbs, "rybs": holder(&lent), "zjlx": lent.document_type,
                    "yqts": 0, "cjlx": "entered"})
            ]
        );

        // A cabinet asks for its own unit's reminders only.
        let elsewhere = app.unit().await;
        let foreign = cabinet
            .sign(
                "sjfk-cjxx",
                &json!({"orgid": elsewhere, "devid": cabinet.device_serial()}),
                app.now_ms(),
            )
            .expect("sign");
        assert_refused(&app.send(&foreign).await, 422, "E_SENDER_MISMATCH", "orgid");
        let other_device = cabinet
            .sign(
                "sjfk-cjxx",
                &json!({"orgid": unit, "devid": "SIM-00000000"}),
                app.now_ms(),
            )
            .expect("sign");
        assert_refused(
            &app.send(&other_device).await,
            422,
            "E_SENDER_MISMATCH",
            "devid",
        );

        // Past the return date it counts days, and stays an `entered` reminder.
        app.clock.set(time("2026-12-12T11:00:00+08:00"));
        let run = run_scheduler(&app).await;
        assert_eq!(run["return_dates"]["marked"], 0, "already due back: {run}");
        let listed = overdue(&app, &reader).await;
        assert_eq!(listed[0]["kind"], "entered");
        assert_eq!(listed[0]["overdue_days"], 2);

        // Cancelled (lost abroad): the reminder closes.
        send_ok(
            &app,
            cabinet.cancellation(&zjbs, CancellationReason::Lost, app.now_ms()),
            "cancel",
        )
        .await;
        processes_caught_up(&app).await;
        assert!(overdue(&app, &reader).await.is_empty());
        let id = listed[0]["reminder"].as_str().expect("reminder id");
        let reminder: Reminder = app.state.commands.load(id).await.expect("reminder");
        assert_eq!(
            reminder.closed.map(|c| c.reason),
            Some(CloseReason::Cancelled)
        );
        app.stop().await;
    }
}

async fn cross(
    app: &TestApp,
    adapter: &SimulatedExitEntryAdapter,
    record: &DocumentRecord,
    direction: Direction,
) {
    let crossing = adapter
        .crossing(record, direction, app.now_ms(), "310000", "HKG")
        .expect("crossing");
    let answer = send_ok(
        app,
        adapter.crossings(&[crossing], app.now_ms()),
        "crossing",
    )
    .await;
    assert_eq!(answer["results"][0]["status"], true, "{answer}");
}

/// Files a list of one person and has the administration answer it.
/// A unit with an active cabinet and a registered unit client, and the exit-entry adapter: who
/// a person's whole lifecycle needs.
pub(crate) struct Parties {
    pub unit: String,
    pub cabinet: SimulatedCabinet,
    pub client: SimulatedUnitClient,
    pub adapter: SimulatedExitEntryAdapter,
}

impl Parties {
    pub(crate) async fn of(app: &TestApp) -> Parties {
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let client = registered_unit_client(app, &unit).await;
        let adapter = registered_adapter(app).await;
        Parties {
            unit,
            cabinet,
            client,
            adapter,
        }
    }
}

pub(crate) async fn filed(
    app: &TestApp,
    client: &SimulatedUnitClient,
    adapter: &SimulatedExitEntryAdapter,
    kind: FilingKind,
    who: &PersonData,
) {
    let item = client.filing_item(kind, who, "科员").expect("item");
    let data = client
        .filing_list_data(vec![item], app.now_ms())
        .expect("filing list");
    let answer = app
        .send(&client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign"))
        .await;
    assert_accepted(&answer, "filing list");
    assert!(results(&answer).iter().all(|r| r.status), "{}", answer.1);
    let verdict = SimulatedExitEntryAdapter::answer(
        &who.person_id().expect("rybs"),
        kind,
        FilingAnswer::Accepted,
        "",
    );
    let answer = app
        .send(
            &adapter
                .filing_results(&data.filing_serial, &[verdict], app.now_ms())
                .expect("answers"),
        )
        .await;
    assert_accepted(&answer, "filing results");
    assert!(results(&answer).iter().all(|r| r.status), "{}", answer.1);
}

#[tokio::test]
async fn a_revoked_filing_cancels_every_document_of_the_person() {
    for kind in StoreKind::ALL {
        let clock = ManualClock::at(time("2026-11-23T10:30:00+08:00"));
        let app = TestApp::spawn_with_clock(kind, clock).await;
        let Parties {
            unit,
            cabinet,
            client,
            adapter,
        } = Parties::of(&app).await;
        let reader = app.token("reader", &unit, &[]).await;

        // Four documents of one person (one in the cabinet, one lent, one already lost, one
        // issued and never deposited), and one of somebody else.
        let kept = record();
        let same_holder = |other: DocumentRecord| DocumentRecord {
            document_type: other.document_type,
            document_number: other.document_number,
            ..kept.clone()
        };
        let (lent, lost, issued) = (
            same_holder(record()),
            same_holder(record()),
            same_holder(record()),
        );
        let other = record();
        let who = PersonData::holder_of(&kept);
        filed(&app, &client, &adapter, FilingKind::New, &who).await;
        for (i, document) in [&kept, &lent, &lost, &other].into_iter().enumerate() {
            send_ok(
                &app,
                cabinet.deposit(document, &cabinet.drawer(i), DepositKind::New, app.now_ms()),
                "deposit",
            )
            .await;
        }
        send_ok(
            &app,
            cabinet.lend(
                &lent,
                &cabinet.drawer(1),
                date(2026, 12, 10),
                &Trip::default(),
                app.now_ms(),
            ),
            "lend",
        )
        .await;
        let lost_id = document_id(&lost).expect("zjbs");
        send_ok(
            &app,
            cabinet.cancellation(&lost_id, CancellationReason::Lost, app.now_ms()),
            "lost",
        )
        .await;
        let issuance = adapter
            .issued(&issued, date(2026, 11, 20))
            .expect("issued record");
        send_ok(
            &app,
            adapter.issued_documents(&[issuance], app.now_ms()),
            "issued",
        )
        .await;

        filed(&app, &client, &adapter, FilingKind::Revoke, &who).await;
        processes_caught_up(&app).await;
        app.caught_up().await;

        let rybs = who.person_id().expect("rybs");
        let (status, person) = app.read(&reader, &format!("/api/v1/persons/{rybs}")).await;
        assert_eq!(status, 200, "{person}");
        assert_eq!(person["state"], "Revoked");
        for document in [&kept, &lent, &lost, &issued] {
            let zjbs = document_id(document).expect("zjbs");
            assert_eq!(
                document_state(&app, &reader, &zjbs).await,
                "Cancelled",
                "{zjbs}"
            );
            let cancellations: Vec<Reason> = document_events(&app, document)
                .await
                .into_iter()
                .filter_map(|e| match e {
                    DocumentEvent::Cancelled(c) => Some(c.reason),
                    _ => None,
                })
                .collect();
            let expected = if zjbs == lost_id {
                Reason::Lost
            } else {
                Reason::FilingRevoked
            };
            assert_eq!(cancellations, [expected], "{zjbs}: cancelled once");
        }
        let other_id = document_id(&other).expect("zjbs");
        assert_eq!(document_state(&app, &reader, &other_id).await, "InCabinet");

        // Recorded as the platform's own decision, naming the revocation.
        let lent_id = document_id(&lent).expect("zjbs");
        let events = app
            .store
            .log
            .events_of("Document", &lent_id)
            .await
            .expect("events");
        let last = events.last().expect("an event");
        assert_eq!(last.metadata["ei"], "platform");
        assert_eq!(
            last.metadata["idempotency_key"],
            format!("revocation:{rybs}:{lent_id}").as_str()
        );
        app.stop().await;
    }
}
