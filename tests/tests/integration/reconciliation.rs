//! Nightly reconciliation (SPEC §6) end to end: signed `sjsb-dzsj` batches from the cabinet
//! simulator over HTTP, one scenario per deviation kind and for the one automatic repair, the
//! same batch sent again, the upload window's edges, missing uploads as alerts, and the read
//! API's scope, on both stores.

use custody_commands::ManualClock;
use custody_domain::document::{Document, DocumentCommand, DocumentState};
use custody_domain::identifiers::SerialKind;
use custody_domain::values::Drawer;
use custody_domain::EventMetadata;
use custody_processes::check_missing_uploads;
use custody_protocol::{DocumentRecord, SignedRequest};
use custody_simulator::generate::{document_id, person_id, random_document_record};
use custody_simulator::reconciliation::{DayLedger, ReconciliationData, RECONCILIATION};
use custody_simulator::{
    AbnormalReason, CancellationReason, DepositKind, SimulateError, SimulatedCabinet, Trip,
};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use serde_json::Value;

/// The business date every scenario reconciles.
const DAY: &str = "2026-11-23";

fn day() -> chrono::NaiveDate {
    date(2026, 11, 23)
}

/// An app whose clock starts on the business date at 10:00, a unit, its active cabinet and a
/// reader of the unit.
struct Scene {
    app: TestApp,
    unit: String,
    cabinet: SimulatedCabinet,
    reader: String,
    /// Every custody report the scene's helpers sent, for a truthful operation log.
    sent: std::sync::Mutex<Vec<SignedRequest>>,
}

impl Scene {
    async fn new(kind: StoreKind) -> Scene {
        let app =
            TestApp::spawn_with_clock(kind, ManualClock::at(time("2026-11-23T10:00:00+08:00")))
                .await;
        let unit = app.unit().await;
        let cabinet = app.active_cabinet_of(&unit).await;
        let reader = app.token("reader", &unit, &[]).await;
        Scene {
            app,
            unit,
            cabinet,
            reader,
            sent: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn at(&self, moment: &str) {
        self.app.clock.set(time(moment));
    }

    async fn send_ok(&self, request: Result<SignedRequest, SimulateError>) -> Value {
        let request = request.expect("signed request");
        let (status, body) = self.app.send(&request).await;
        assert_eq!(status, 200, "{body}");
        if let Ok(mut sent) = self.sent.lock() {
            sent.push(request);
        }
        body
    }

    /// A ledger whose operation log holds every report the helpers sent.
    fn logged_ledger(&self) -> DayLedger {
        let mut ledger = DayLedger::new();
        if let Ok(sent) = self.sent.lock() {
            for request in sent.iter() {
                ledger.logged(request).expect("log");
            }
        }
        ledger
    }

    /// A new document deposited into the `drawer`-th drawer now.
    async fn deposit(&self, drawer: usize) -> (DocumentRecord, Drawer) {
        let record = random_document_record(&mut rand::rng());
        let drawer = self.cabinet.drawer(drawer);
        let now = self.app.now_ms();
        self.send_ok(
            self.cabinet
                .deposit(&record, &drawer, DepositKind::New, now),
        )
        .await;
        (record, drawer)
    }

    async fn lend(&self, record: &DocumentRecord, drawer: &Drawer) {
        let now = self.app.now_ms();
        let trip = Trip::default();
        self.send_ok(
            self.cabinet
                .lend(record, drawer, date(2026, 12, 24), &trip, now),
        )
        .await;
    }

    /// A document deposited and lent, which the cabinet lists as in its drawer again: that
    /// batch's business data, made at 21:00 inside the window, and the drawer.
    async fn batch_of_a_lent_document(&self) -> (Drawer, ReconciliationData) {
        let (record, drawer) = self.deposit(0).await;
        self.lend(&record, &drawer).await;
        self.at("2026-11-23T21:00:00+08:00");
        let mut ledger = DayLedger::new();
        ledger.in_cabinet(&record, &drawer).expect("ledger");
        let data = self
            .cabinet
            .reconciliation_data(day(), &ledger, self.app.now_ms())
            .expect("data");
        (drawer, data)
    }

    /// Signs the ledger's batch for [`DAY`] now and posts it.
    async fn upload(&self, ledger: &DayLedger) -> (SignedRequest, (u16, Value)) {
        let batch = self
            .cabinet
            .reconciliation(day(), ledger, self.app.now_ms())
            .expect("batch");
        let answer = self.app.send(&batch).await;
        (batch, answer)
    }

    /// Uploads at 21:00 and expects it taken; returns the answer.
    async fn reconcile(&self, ledger: &DayLedger) -> Value {
        self.at("2026-11-23T21:00:00+08:00");
        let (_, (status, body)) = self.upload(ledger).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], true, "{body}");
        body
    }

    /// The cabinet's result for [`DAY`] as the reader sees it, once the projections have
    /// applied everything recorded.
    async fn result(&self) -> Value {
        self.app.caught_up().await;
        let (status, body) = self
            .app
            .read(
                &self.reader,
                &format!(
                    "/api/v1/reconciliations?date={DAY}&sbxlh={}",
                    self.cabinet.device_serial()
                ),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn events_of(&self, record: &DocumentRecord) -> Vec<String> {
        self.app
            .store
            .log
            .events_of("Document", &document_id(record).expect("zjbs"))
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    async fn document(&self, record: &DocumentRecord) -> Document {
        self.app
            .state
            .commands
            .load(&document_id(record).expect("zjbs"))
            .await
            .expect("document")
    }
}

fn zjbs(record: &DocumentRecord) -> String {
    document_id(record).expect("zjbs")
}

/// The state deviations of the only batch of a result: (zjbs, reason, repaired).
fn state_deviations(result: &Value) -> Vec<(String, String, bool)> {
    assert_eq!(
        result["reconciliations"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    result["reconciliations"][0]["state_deviations"]
        .as_array()
        .expect("state deviations")
        .iter()
        .map(|d| {
            (
                d["zjbs"].as_str().unwrap_or_default().to_string(),
                d["reason"].as_str().unwrap_or_default().to_string(),
                d["repaired"] == Value::Bool(true),
            )
        })
        .collect()
}

fn log_deviations(result: &Value) -> Vec<(String, String, Value)> {
    result["reconciliations"][0]["log_deviations"]
        .as_array()
        .expect("log deviations")
        .iter()
        .map(|d| {
            (
                d["ywlsh"].as_str().unwrap_or_default().to_string(),
                d["side"].as_str().unwrap_or_default().to_string(),
                d["note"].clone(),
            )
        })
        .collect()
}

fn serial_of(request: &SignedRequest) -> String {
    let data: Value = request.business_data().expect("bdata");
    data["ywlsh"].as_str().expect("ywlsh").to_string()
}

#[tokio::test]
async fn a_true_batch_has_no_deviations() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (kept, kept_in) = scene.deposit(0).await;
        let (lent, lent_from) = scene.deposit(1).await;
        scene.lend(&lent, &lent_from).await;
        let mut ledger = scene.logged_ledger();
        ledger.in_cabinet(&kept, &kept_in).expect("ledger");
        ledger.out(&lent).expect("ledger");
        let answer = scene.reconcile(&ledger).await;
        assert_eq!(answer["zjztdzpl"], Value::Array(vec![]), "{answer}");
        assert_eq!(answer["dzsjpl"], Value::Array(vec![]), "{answer}");
        let result = scene.result().await;
        assert!(state_deviations(&result).is_empty(), "{result}");
        let batch = &result["reconciliations"][0];
        assert_eq!(batch["documents_reported"], 2);
        assert_eq!(batch["operations_reported"], 3);
        assert_eq!(batch["unit"], scene.unit.as_str());
        assert_eq!(batch["as_of"], "2026-11-24T00:00:00+08:00");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn in_cabinet_against_withdrawn_or_awaiting_return_is_repaired() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (withdrawn, withdrawn_from) = scene.deposit(0).await;
        scene.lend(&withdrawn, &withdrawn_from).await;
        // Deposited and lent three days ago, due back yesterday: due now.
        scene.at("2026-11-20T10:00:00+08:00");
        let (due, due_from) = scene.deposit(1).await;
        let now = scene.app.now_ms();
        scene
            .send_ok(
                scene
                    .cabinet
                    .lend(&due, &due_from, date(2026, 11, 22), &Trip::default(), now),
            )
            .await;
        scene.at("2026-11-23T10:00:00+08:00");
        scene
            .app
            .state
            .commands
            .document(
                &zjbs(&due),
                DocumentCommand::MarkReturnDateReached { today: day() },
                EventMetadata {
                    sender: "platform".into(),
                    ..EventMetadata::default()
                },
            )
            .await
            .expect("return date reached");
        assert_eq!(
            scene.document(&due).await.state,
            DocumentState::AwaitingReturn
        );
        // The cabinet holds both, the first in another drawer than it left from.
        let mut ledger = DayLedger::new();
        let back_in = scene.cabinet.drawer(5);
        ledger.in_cabinet(&withdrawn, &back_in).expect("ledger");
        ledger.in_cabinet(&due, &due_from).expect("ledger");
        let answer = scene.reconcile(&ledger).await;
        let repaired: Vec<(Value, Value, Value)> = answer["zjztdzpl"]
            .as_array()
            .expect("zjztdzpl")
            .iter()
            .map(|d| (d["pllx"].clone(), d["xtzt"].clone(), d["sfxfcg"].clone()))
            .collect();
        assert_eq!(
            repaired,
            vec![
                ("out_on_platform".into(), "Withdrawn".into(), true.into()),
                (
                    "out_on_platform".into(),
                    "AwaitingReturn".into(),
                    true.into()
                ),
            ],
            "{answer}"
        );
        for (record, drawer) in [(&withdrawn, &back_in), (&due, &due_from)] {
            let document = scene.document(record).await;
            assert_eq!(document.state, DocumentState::InCabinet);
            let location = document.location.expect("location");
            assert_eq!(location.device.as_str(), scene.cabinet.device_serial());
            assert_eq!(&location.drawer, drawer);
            assert_eq!(
                scene.events_of(record).await.last().map(String::as_str),
                Some("ReconciliationCorrected")
            );
        }
        let result = scene.result().await;
        assert_eq!(
            state_deviations(&result),
            vec![
                (zjbs(&withdrawn), "out_on_platform".into(), true),
                (zjbs(&due), "out_on_platform".into(), true),
            ]
        );
        assert_eq!(result["reconciliations"][0]["summary"]["unrepaired"], 0);
        // Readers see the correction as an access record of the drawer.
        scene.app.caught_up().await;
        let (status, view) = scene
            .app
            .read(
                &scene.reader,
                &format!("/api/v1/documents/{}", zjbs(&withdrawn)),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "InCabinet");
        assert_eq!(view["location"]["row"], i64::from(back_in.row));
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn a_repair_overtaken_by_a_later_event_is_recorded_as_not_made() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (record, drawer) = scene.deposit(0).await;
        scene.lend(&record, &drawer).await;
        // After midnight, before the batch: the document is cancelled.
        scene.at("2026-11-24T00:30:00+08:00");
        let now = scene.app.now_ms();
        scene
            .send_ok(
                scene
                    .cabinet
                    .cancellation(&zjbs(&record), CancellationReason::Lost, now),
            )
            .await;
        scene.at("2026-11-24T01:00:00+08:00");
        let mut ledger = DayLedger::new();
        ledger.in_cabinet(&record, &drawer).expect("ledger");
        let (_, (status, answer)) = scene.upload(&ledger).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["zjztdzpl"][0]["xtzt"], "Withdrawn",
            "as of the business date"
        );
        assert_eq!(answer["zjztdzpl"][0]["sfxfcg"], false, "{answer}");
        assert_eq!(
            scene.document(&record).await.state,
            DocumentState::Cancelled
        );
        let result = scene.result().await;
        let deviation = &result["reconciliations"][0]["state_deviations"][0];
        assert_eq!(deviation["repaired"], false);
        assert!(
            deviation["note"]
                .as_str()
                .is_some_and(|n| n.contains("Cancelled")),
            "{deviation}"
        );
        assert_eq!(result["reconciliations"][0]["summary"]["unrepaired"], 1);
        scene.app.stop().await;
    }
}

/// The state deviations the platform lists and never repairs, one scenario each.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// The cabinet says out; the platform has it in this cabinet.
    OutButInCabinet,
    /// The cabinet has it in another drawer than the platform.
    AnotherDrawer,
    /// A document the platform has never seen.
    Unknown,
    /// A cancelled document in a drawer.
    Cancelled,
    /// Another holder than the platform's.
    AnotherHolder,
    /// Operated on by this cabinet that day, but not listed.
    NotListed,
}

/// Sets `case` up, reconciles a batch whose operation log is true, and checks that the batch
/// has exactly one deviation, of `reason`, not repaired, and that no document changed. Returns
/// the scene, the document, the cabinet's answer and the deviation as readers see it.
async fn lone_deviation(
    kind: StoreKind,
    case: Case,
    reason: &str,
) -> (Scene, DocumentRecord, Value, Value) {
    let scene = Scene::new(kind).await;
    let (record, drawer) = match case {
        Case::Unknown => (
            random_document_record(&mut rand::rng()),
            scene.cabinet.drawer(0),
        ),
        _ => scene.deposit(0).await,
    };
    if let Case::Cancelled = case {
        let now = scene.app.now_ms();
        scene
            .send_ok(
                scene
                    .cabinet
                    .cancellation(&zjbs(&record), CancellationReason::Damaged, now),
            )
            .await;
    }
    let mut ledger = scene.logged_ledger();
    match case {
        Case::OutButInCabinet => {
            ledger.out(&record).expect("ledger");
        }
        Case::AnotherDrawer => {
            ledger
                .in_cabinet(&record, &scene.cabinet.drawer(2))
                .expect("ledger");
        }
        Case::Unknown | Case::Cancelled => {
            ledger.in_cabinet(&record, &drawer).expect("ledger");
        }
        Case::AnotherHolder => {
            ledger.in_cabinet(&record, &drawer).expect("ledger");
            let other = random_document_record(&mut rand::rng());
            if let Some(item) = ledger.documents.last_mut() {
                item.person_id =
                    person_id(&other.citizen_id_number, &other.chinese_name).expect("rybs");
            }
        }
        Case::NotListed => {}
    }
    let events_before = scene.app.store.log.count().await.expect("count");
    let history = scene.events_of(&record).await;
    let answer = scene.reconcile(&ledger).await;
    let result = scene.result().await;
    assert_eq!(
        state_deviations(&result),
        vec![(zjbs(&record), reason.to_string(), false)],
        "{case:?}: {result}"
    );
    assert!(log_deviations(&result).is_empty(), "{case:?}: {result}");
    assert_eq!(
        scene.events_of(&record).await,
        history,
        "{case:?}: only the repair changes a document"
    );
    // The reconciliation's own two events, nothing else.
    assert_eq!(
        scene.app.store.log.count().await.expect("count"),
        events_before + 2
    );
    assert_eq!(result["reconciliations"][0]["summary"]["unrepaired"], 1);
    assert_eq!(answer["zjztdzpl"][0]["pllx"], reason, "{answer}");
    assert_eq!(answer["zjztdzpl"][0]["sfxfcg"], false, "{answer}");
    let deviation = result["reconciliations"][0]["state_deviations"][0].clone();
    (scene, record, answer, deviation)
}

#[tokio::test]
async fn out_by_the_cabinet_but_in_it_by_the_platform_is_listed() {
    for kind in StoreKind::ALL {
        let (scene, _, answer, deviation) =
            lone_deviation(kind, Case::OutButInCabinet, "in_cabinet_on_platform").await;
        assert_eq!(deviation["cabinet_state"], "out");
        assert_eq!(deviation["platform_state"], "InCabinet");
        assert_eq!(deviation["platform_sbxlh"], scene.cabinet.device_serial());
        assert_eq!(answer["zjztdzpl"][0]["bggzt"], "2");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn another_drawer_than_the_platforms_is_listed() {
    for kind in StoreKind::ALL {
        let (scene, record, answer, deviation) =
            lone_deviation(kind, Case::AnotherDrawer, "location_mismatch").await;
        let drawer = scene.cabinet.drawer(2);
        assert_eq!(deviation["cabinet_state"], "in_cabinet");
        assert_eq!(deviation["cabinet_drawer"]["row"], i64::from(drawer.row));
        assert_eq!(deviation["cabinet_drawer"]["col"], i64::from(drawer.column));
        assert_eq!(
            deviation["holder"]["xm"],
            record.chinese_name.as_str(),
            "{deviation}"
        );
        assert_eq!(deviation["unit"], scene.unit.as_str());
        assert_eq!(answer["zjztdzpl"][0]["ryxm"], record.chinese_name.as_str());
        assert_eq!(answer["zjztdzpl"][0]["bggzt"], "1");
        // The name is in the answers, never stored with the deviation (docs/personal-data.md):
        // the event and both reconciliation views keep the holder's RYBS only.
        let pool = scene.app.store.log.platform().pool();
        for sql in [
            "SELECT CAST(payload AS TEXT) FROM events WHERE aggregate_type = 'Reconciliation'",
            "SELECT CAST(aggregate AS TEXT) FROM view_reconciliations",
            "SELECT COALESCE(holder_name, '') FROM view_reconciliation_deviations",
        ] {
            let stored: Vec<String> = sqlx::query_scalar(sql)
                .fetch_all(pool)
                .await
                .expect("stored");
            assert!(!stored.is_empty(), "{sql}");
            assert!(
                stored
                    .iter()
                    .all(|s| !s.contains(record.chinese_name.as_str())),
                "{kind:?}: {sql}: {stored:?}"
            );
        }
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_document_is_a_deviation_not_an_error() {
    for kind in StoreKind::ALL {
        let (scene, record, _, deviation) =
            lone_deviation(kind, Case::Unknown, "unknown_document").await;
        assert_eq!(deviation["platform_state"], "Unknown");
        assert_eq!(deviation["holder"]["xm"], Value::Null);
        assert!(
            scene.events_of(&record).await.is_empty(),
            "it stays unknown"
        );
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn a_cancelled_document_in_a_drawer_is_listed() {
    for kind in StoreKind::ALL {
        let (scene, _, _, deviation) =
            lone_deviation(kind, Case::Cancelled, "state_mismatch").await;
        assert_eq!(deviation["platform_state"], "Cancelled");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn another_holder_than_the_platforms_is_listed() {
    for kind in StoreKind::ALL {
        let (scene, _, _, deviation) =
            lone_deviation(kind, Case::AnotherHolder, "holder_mismatch").await;
        assert_eq!(deviation["platform_state"], "InCabinet");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn a_document_operated_on_but_not_listed_is_listed() {
    for kind in StoreKind::ALL {
        let (scene, record, answer, deviation) =
            lone_deviation(kind, Case::NotListed, "not_reported").await;
        assert_eq!(deviation["cabinet_state"], "not_reported");
        assert_eq!(deviation["holder"]["xm"], record.chinese_name.as_str());
        assert_eq!(answer["zjztdzpl"][0]["bggzt"], "");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn operation_log_deviations_name_each_side() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let mut ledger = DayLedger::new();
        // Sent and logged: no deviation.
        let record = random_document_record(&mut rand::rng());
        let drawer = scene.cabinet.drawer(0);
        let deposit = scene
            .cabinet
            .deposit(&record, &drawer, DepositKind::New, scene.app.now_ms())
            .expect("deposit");
        assert_eq!(scene.app.send(&deposit).await.0, 200);
        ledger
            .logged(&deposit)
            .expect("log")
            .in_cabinet(&record, &drawer)
            .expect("ledger");
        // Sent, not logged: only the platform has it.
        let unlogged = random_document_record(&mut rand::rng());
        let unlogged_in = scene.cabinet.drawer(1);
        let platform_only = scene
            .cabinet
            .deposit(
                &unlogged,
                &unlogged_in,
                DepositKind::New,
                scene.app.now_ms(),
            )
            .expect("deposit");
        assert_eq!(scene.app.send(&platform_only).await.0, 200);
        ledger.in_cabinet(&unlogged, &unlogged_in).expect("ledger");
        // Logged, never sent: only the cabinet has it.
        let never_sent = scene
            .cabinet
            .next_business_serial(SerialKind::Deposit, scene.app.now_ms())
            .expect("serial");
        ledger.log(&never_sent, "11", "20261123100500");
        // Logged, sent and refused: the note says why the platform has no event.
        let unknown = random_document_record(&mut rand::rng());
        let refused = scene
            .cabinet
            .lend(
                &unknown,
                &drawer,
                date(2026, 12, 1),
                &Trip::default(),
                scene.app.now_ms(),
            )
            .expect("lend");
        let (status, body) = scene.app.send(&refused).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (409, Some("E_ILLEGAL_TRANSITION"))
        );
        ledger.logged(&refused).expect("log");

        let answer = scene.reconcile(&ledger).await;
        let result = scene.result().await;
        assert_eq!(
            log_deviations(&result),
            vec![
                (never_sent.clone(), "cabinet_only".into(), Value::Null),
                (
                    serial_of(&refused),
                    "cabinet_only".into(),
                    "refused: E_ILLEGAL_TRANSITION".into()
                ),
                (
                    serial_of(&platform_only),
                    "platform_only".into(),
                    Value::Null
                ),
            ],
            "{result}"
        );
        let platform_side = &result["reconciliations"][0]["log_deviations"][2];
        assert_eq!(platform_side["operation"], "deposit_new");
        assert_eq!(platform_side["zjbs"], zjbs(&unlogged).as_str());
        assert!(state_deviations(&result).is_empty(), "{result}");
        let sides: Vec<Value> = answer["dzsjpl"]
            .as_array()
            .expect("dzsjpl")
            .iter()
            .map(|d| d["ly"].clone())
            .collect();
        assert_eq!(
            sides,
            vec![Value::from("cabinet"), "cabinet".into(), "platform".into()]
        );
        assert_eq!(answer["dzsjpl"][0]["czsj"], "20261123100500");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn inventory_gaps_show_in_the_reconciliation_view() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let mut ledger = DayLedger::new();
        let mut gaps = Vec::new();
        for (i, reason) in [
            AbnormalReason::Missing,
            AbnormalReason::Invalid,
            AbnormalReason::ChipUnreadable,
        ]
        .into_iter()
        .enumerate()
        {
            let (record, drawer) = scene.deposit(i).await;
            let now = scene.app.now_ms();
            scene
                .send_ok(
                    scene
                        .cabinet
                        .abnormal_withdrawal(&record, &drawer, reason, now),
                )
                .await;
            ledger.out(&record).expect("ledger");
            if reason != AbnormalReason::ChipUnreadable {
                gaps.push((zjbs(&record), reason.code().to_string()));
            }
        }
        scene.app.caught_up().await;
        // Shown before the batch, and after it.
        for upload in [false, true] {
            if upload {
                scene.reconcile(&ledger).await;
            }
            let result = scene.result().await;
            let mut listed: Vec<(String, String)> = result["inventory_gaps"]
                .as_array()
                .expect("inventory gaps")
                .iter()
                .map(|g| {
                    (
                        g["zjbs"].as_str().unwrap_or_default().to_string(),
                        g["reason"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            listed.sort();
            let mut expected = gaps.clone();
            expected.sort();
            assert_eq!(listed, expected, "{result}");
        }
        scene.app.caught_up().await;
        let csv = csv(&scene.app, &scene.reader, &format!("date={DAY}")).await;
        assert_eq!(
            csv.lines()
                .filter(|l| l.starts_with("inventory_gap,"))
                .count(),
            2,
            "{csv}"
        );
        // Another day has none.
        let (_, other_day) = scene
            .app
            .read(&scene.reader, "/api/v1/reconciliations?date=2026-11-22")
            .await;
        assert_eq!(other_day["inventory_gaps"], Value::Array(vec![]));
        scene.app.stop().await;
    }
}

async fn raw(app: &TestApp, token: &str, path: &str) -> Vec<u8> {
    let response = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("read");
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response.bytes().await.expect("body").to_vec()
}

async fn csv(app: &TestApp, token: &str, query: &str) -> String {
    let bytes = raw(app, token, &format!("/api/v1/reconciliations.csv?{query}")).await;
    String::from_utf8(bytes).expect("UTF-8 CSV")
}

#[tokio::test]
async fn the_same_batch_again_gives_the_same_result_and_no_events() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (record, drawer) = scene.deposit(0).await;
        scene.lend(&record, &drawer).await;
        let mut ledger = DayLedger::new();
        ledger.in_cabinet(&record, &drawer).expect("ledger");
        let stranger = random_document_record(&mut rand::rng());
        ledger
            .in_cabinet(&stranger, &scene.cabinet.drawer(1))
            .expect("ledger");
        ledger.log(
            &scene
                .cabinet
                .next_business_serial(SerialKind::Deposit, scene.app.now_ms())
                .expect("serial"),
            "11",
            "20261123110000",
        );
        scene.at("2026-11-23T21:00:00+08:00");
        let (batch, (status, first)) = scene.upload(&ledger).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["duplicate"], false);
        let query = format!("date={DAY}&sbxlh={}", scene.cabinet.device_serial());
        scene.app.caught_up().await;
        let json_before = raw(
            &scene.app,
            &scene.reader,
            &format!("/api/v1/reconciliations?{query}"),
        )
        .await;
        let csv_before = csv(&scene.app, &scene.reader, &query).await;
        let events_before = scene.app.store.log.count().await.expect("count");

        // Sent again later that night, under a new request id: a duplicate.
        scene.at("2026-11-23T23:30:00+08:00");
        let again = scene
            .cabinet
            .sign_again(&batch, scene.app.now_ms(), None)
            .expect("sign again");
        let (status, second) = scene.app.send(&again).await;
        assert_eq!(status, 200, "{second}");
        assert_eq!(second["duplicate"], true);
        assert_eq!(second["zjztdzpl"], first["zjztdzpl"]);
        assert_eq!(second["dzsjpl"], first["dzsjpl"]);
        assert_eq!(
            scene.app.store.log.count().await.expect("count"),
            events_before
        );
        scene.app.caught_up().await;
        let json_after = raw(
            &scene.app,
            &scene.reader,
            &format!("/api/v1/reconciliations?{query}"),
        )
        .await;
        assert_eq!(json_before, json_after, "byte-identical results");
        assert_eq!(csv_before, csv(&scene.app, &scene.reader, &query).await);
        assert!(
            csv_before.starts_with("\u{feff}kind,date,sbxlh,dzywlsh,zjbs,"),
            "{csv_before}"
        );
        assert_eq!(
            csv_before
                .lines()
                .filter(|l| l.starts_with("state,"))
                .count(),
            2,
            "{csv_before}"
        );
        assert_eq!(
            csv_before
                .lines()
                .filter(|l| l.starts_with("log_cabinet_only,"))
                .count(),
            1
        );

        // Another batch for the same cabinet and date is refused, and changes nothing.
        let (_, (status, other)) = scene.upload(&ledger).await;
        assert_eq!(
            (status, other["error_code"].as_str()),
            (409, Some("E_ILLEGAL_TRANSITION")),
            "{other}"
        );
        assert_eq!(
            scene.app.store.log.count().await.expect("count"),
            events_before
        );
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn batches_are_taken_from_20_00_to_06_00_only() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let late = scene.app.active_cabinet_of(&scene.unit).await;
        let later = scene.app.active_cabinet_of(&scene.unit).await;
        let ledger = DayLedger::new();
        let send = |cabinet: &SimulatedCabinet| {
            cabinet
                .reconciliation(day(), &ledger, scene.app.now_ms())
                .expect("batch")
        };
        for (moment, cabinet, taken) in [
            ("2026-11-23T19:59:59+08:00", &scene.cabinet, false),
            ("2026-11-23T20:00:00+08:00", &scene.cabinet, true),
            ("2026-11-24T05:59:59+08:00", &late, true),
            ("2026-11-24T06:00:00+08:00", &later, false),
        ] {
            scene.at(moment);
            let (status, body) = scene.app.send(&send(cabinet)).await;
            if taken {
                assert_eq!(status, 200, "{moment}: {body}");
            } else {
                assert_eq!(status, 422, "{moment}: {body}");
                assert_eq!(body["error_code"], "E_OUTSIDE_WINDOW", "{moment}: {body}");
            }
        }
        // The refusals are kept with their bodies, like every refused report.
        let (status, rejections) = scene
            .app
            .ops(reqwest::Method::GET, "/api/v1/ops/rejections", None)
            .await;
        assert_eq!(status, 200);
        let outside = rejections["rejections"].as_array().map(|r| {
            r.iter()
                .filter(|r| r["error_code"] == "E_OUTSIDE_WINDOW")
                .count()
        });
        assert_eq!(outside, Some(2), "{rejections}");
        scene.app.stop().await;
    }
}

/// A change made to a good batch's business data.
type Doctor = Box<dyn Fn(&mut Value)>;

#[tokio::test]
async fn a_malformed_batch_is_refused_whole() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (drawer, good) = scene.batch_of_a_lent_document().await;
        let events = scene.app.store.log.count().await.expect("count");
        let cases: Vec<(&str, u16, &str, Doctor)> = vec![
            (
                "another device",
                422,
                "E_SENDER_MISMATCH",
                Box::new(|d| d["sbxlh"] = "SIM-99999999".into()),
            ),
            (
                "another unit",
                422,
                "E_SENDER_MISMATCH",
                Box::new(|d| d["tyshxydm"] = "91350100M000100Y43".into()),
            ),
            (
                "not a DZ serial",
                422,
                "E_INVALID_FIELD",
                Box::new(|d| {
                    let serial = d["dzywlsh"]
                        .as_str()
                        .unwrap_or_default()
                        .replacen("DZ", "RG", 1);
                    d["dzywlsh"] = serial.into();
                }),
            ),
            (
                "a date to come",
                422,
                "E_INVALID_FIELD",
                Box::new(|d| d["dzrq"] = "20261124".into()),
            ),
            (
                "a drawer outside the grid",
                422,
                "E_NO_SUCH_DRAWER",
                Box::new(|d| d["zjzt"][0]["cth"] = "99".into()),
            ),
            (
                "a state that is neither",
                422,
                "E_INVALID_FIELD",
                Box::new(|d| d["zjzt"][0]["zt"] = "3".into()),
            ),
            (
                "a document twice",
                422,
                "E_INVALID_FIELD",
                Box::new(|d| {
                    let item = d["zjzt"][0].clone();
                    if let Some(list) = d["zjzt"].as_array_mut() {
                        list.push(item);
                    }
                }),
            ),
            (
                "no zjzt",
                400,
                "E_MALFORMED",
                Box::new(|d| {
                    if let Some(map) = d.as_object_mut() {
                        map.remove("zjzt");
                    }
                }),
            ),
        ];
        for (case, status, code, doctor) in cases {
            let mut data = serde_json::to_value(&good).expect("JSON");
            doctor(&mut data);
            let request = scene
                .cabinet
                .sign(RECONCILIATION, &data, scene.app.now_ms())
                .expect("sign");
            let (got, body) = scene.app.send(&request).await;
            assert_eq!(
                (got, body["error_code"].as_str()),
                (status, Some(code)),
                "{case}: {body}"
            );
        }
        assert_eq!(scene.app.store.log.count().await.expect("count"), events);
        // Numbers are taken for the codes, as some cabinets send them.
        let mut numeric = serde_json::to_value(&good).expect("JSON");
        numeric["zjzt"][0]["zt"] = 1.into();
        numeric["zjzt"][0]["cth"] = i64::from(drawer.row).into();
        numeric["zjzt"][0]["ctl"] = i64::from(drawer.column).into();
        let request = scene
            .cabinet
            .sign(RECONCILIATION, &numeric, scene.app.now_ms())
            .expect("sign");
        let (status, body) = scene.app.send(&request).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["zjztdzpl"][0]["sfxfcg"], true, "{body}");
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn cabinets_that_did_not_upload_are_alerts_after_06_00() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let app = &scene.app;
        let (department, ours, theirs) = app.department_with_two_units().await;
        let uploader = app.active_cabinet_of(&ours).await;
        let silent = app.active_cabinet_of(&theirs).await;
        let mut ledger = DayLedger::new();
        ledger
            .in_cabinet(
                &random_document_record(&mut rand::rng()),
                &uploader.drawer(0),
            )
            .expect("ledger");
        scene.at("2026-11-23T22:00:00+08:00");
        let batch = uploader
            .reconciliation(day(), &ledger, app.now_ms())
            .expect("batch");
        assert_eq!(app.send(&batch).await.0, 200);

        let window = app.state.reconciliation_window;
        scene.at("2026-11-24T05:59:59+08:00");
        assert_eq!(
            check_missing_uploads(&app.state.commands, window)
                .await
                .expect("check"),
            0
        );
        scene.at("2026-11-24T06:00:00+08:00");
        // The scene's own cabinet did not upload either.
        assert_eq!(
            check_missing_uploads(&app.state.commands, window)
                .await
                .expect("check"),
            2
        );
        assert_eq!(
            check_missing_uploads(&app.state.commands, window)
                .await
                .expect("check"),
            0
        );

        let head = app.token("reader", &department, &[]).await;
        app.caught_up().await;
        let (status, alerts) = app
            .read(&head, "/api/v1/alerts?kind=reconciliation_missing")
            .await;
        assert_eq!(status, 200, "{alerts}");
        let missing: Vec<Value> = alerts["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .map(|a| a["subject"]["sbxlh"].clone())
            .collect();
        assert_eq!(
            missing,
            vec![Value::from(silent.device_serial())],
            "{alerts}"
        );
        assert_eq!(alerts["alerts"][0]["subject"]["date"], DAY);
        assert_eq!(alerts["alerts"][0]["unit"], theirs.as_str());
        let (_, deviations) = app
            .read(&head, "/api/v1/alerts?kind=reconciliation_deviation")
            .await;
        assert_eq!(
            deviations["alerts"].as_array().map(Vec::len),
            Some(1),
            "{deviations}"
        );
        assert_eq!(
            deviations["alerts"][0]["subject"]["sbxlh"],
            uploader.device_serial()
        );
        assert_eq!(deviations["alerts"][0]["detail"]["unrepaired"], 1);

        // Each unit sees its own only.
        let our_reader = app.token("reader", &ours, &[]).await;
        let their_reader = app.token("reader", &theirs, &[]).await;
        let (_, ours_alerts) = app
            .read(&our_reader, "/api/v1/alerts?kind=reconciliation_missing")
            .await;
        assert_eq!(ours_alerts["alerts"], Value::Array(vec![]));
        let path = format!("/api/v1/reconciliations?date={DAY}");
        let (_, mine) = app.read(&our_reader, &path).await;
        assert_eq!(
            mine["reconciliations"].as_array().map(Vec::len),
            Some(1),
            "{mine}"
        );
        assert_eq!(mine["missing_uploads"], Value::Array(vec![]));
        let (_, other) = app.read(&their_reader, &path).await;
        assert_eq!(other["reconciliations"], Value::Array(vec![]), "{other}");
        assert_eq!(other["missing_uploads"][0]["sbxlh"], silent.device_serial());
        let (status, _) = app
            .read(&their_reader, "/api/v1/reconciliations?date=23.11.2026")
            .await;
        assert_eq!(status, 422);
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn a_serial_sent_again_with_other_content_is_refused() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (_, data) = scene.batch_of_a_lent_document().await;
        let first = scene
            .cabinet
            .sign(RECONCILIATION, &data, scene.app.now_ms())
            .expect("sign");
        let (status, body) = scene.app.send(&first).await;
        assert_eq!(status, 200, "{body}");
        let events = scene.app.store.log.count().await.expect("count");

        // The same dzywlsh, now saying the document is out.
        let mut other = serde_json::to_value(&data).expect("JSON");
        other["zjzt"][0]["zt"] = "2".into();
        let request = scene
            .cabinet
            .sign(RECONCILIATION, &other, scene.app.now_ms())
            .expect("sign");
        let (status, body) = scene.app.send(&request).await;
        assert_eq!(
            (status, body["error_code"].as_str()),
            (409, Some("E_SERIAL_REUSED")),
            "{body}"
        );
        assert_eq!(scene.app.store.log.count().await.expect("count"), events);
        // The same content again is still a duplicate.
        let again = scene
            .cabinet
            .sign(RECONCILIATION, &data, scene.app.now_ms())
            .expect("sign");
        let (status, body) = scene.app.send(&again).await;
        assert_eq!(
            (status, &body["duplicate"]),
            (200, &Value::Bool(true)),
            "{body}"
        );
        scene.app.stop().await;
    }
}

#[tokio::test]
async fn a_rebuilt_reconciliations_view_reads_the_same() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let (record, drawer) = scene.deposit(0).await;
        scene.lend(&record, &drawer).await;
        let mut ledger = scene.logged_ledger();
        ledger.in_cabinet(&record, &drawer).expect("ledger");
        ledger
            .in_cabinet(
                &random_document_record(&mut rand::rng()),
                &scene.cabinet.drawer(1),
            )
            .expect("ledger");
        scene.reconcile(&ledger).await;
        scene.app.caught_up().await;
        let query = format!("date={DAY}&sbxlh={}", scene.cabinet.device_serial());
        let path = format!("/api/v1/reconciliations?{query}");
        let before = raw(&scene.app, &scene.reader, &path).await;
        let (status, body) = scene
            .app
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/projections/reconciliations/rebuild",
                None,
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let generation = loop {
            let (_, body) = scene
                .app
                .ops(reqwest::Method::GET, "/api/v1/ops/projections", None)
                .await;
            let view = body["projections"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == "reconciliations").cloned())
                .expect("reconciliations projection");
            match view["rebuild"]["state"].as_str() {
                Some("finished") => break view["generation"].as_i64(),
                Some("failed") => panic!("rebuild failed: {view}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        assert_eq!(generation, Some(2));
        let after = raw(&scene.app, &scene.reader, &path).await;
        assert_eq!(
            String::from_utf8_lossy(&before),
            String::from_utf8_lossy(&after)
        );
        let result = scene.result().await;
        assert_eq!(state_deviations(&result).len(), 2, "{result}");
        scene.app.stop().await;
    }
}

/// SPEC §3.6 and §6.1: a batch repairs only documents of its own unit. Another unit's document
/// that the cabinet lists as in its drawer, while the platform has it out, is a deviation for
/// operators (`other_units_document`), never a repair; the document stays where its unit has it.
#[tokio::test]
async fn another_units_document_listed_in_the_cabinet_is_never_repaired() {
    for kind in StoreKind::ALL {
        let scene = Scene::new(kind).await;
        let other_unit = scene.app.unit().await;
        let other = scene.app.active_cabinet_of(&other_unit).await;
        let other_reader = scene.app.token("reader", &other_unit, &[]).await;
        // The other unit's document, lent out by the other unit's cabinet.
        let record = random_document_record(&mut rand::rng());
        let drawer = other.drawer(0);
        let now = scene.app.now_ms();
        scene
            .send_ok(other.deposit(&record, &drawer, DepositKind::New, now))
            .await;
        scene
            .send_ok(other.lend(&record, &drawer, date(2026, 12, 24), &Trip::default(), now))
            .await;
        let events = scene.app.store.log.count().await.expect("count");
        // This unit's cabinet says it holds it.
        let mut ledger = DayLedger::new();
        ledger
            .in_cabinet(&record, &scene.cabinet.drawer(3))
            .expect("ledger");
        let answer = scene.reconcile(&ledger).await;
        let deviation = &answer["zjztdzpl"][0];
        assert_eq!(deviation["pllx"], "other_units_document", "{answer}");
        assert_eq!(deviation["sfxfcg"], false, "{answer}");
        assert_eq!(
            scene.document(&record).await.state,
            DocumentState::Withdrawn,
            "not repaired"
        );
        // The batch's own events only: its diff and its (empty) repairs.
        let appended = scene.app.store.log.count().await.expect("count") - events;
        assert_eq!(
            appended, 2,
            "BatchDiffed and RepairsRecorded, no correction"
        );
        scene.app.caught_up().await;
        let (status, view) = scene
            .app
            .read(
                &other_reader,
                &format!("/api/v1/documents/{}", zjbs(&record)),
            )
            .await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["state"], "Withdrawn");
        assert_eq!(view["unit"], other_unit.as_str());
        scene.app.stop().await;
    }
}
