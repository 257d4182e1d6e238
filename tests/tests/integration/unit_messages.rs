//! The unit clients' messages end to end over HTTP, on both stores: filing lists and their answers
//! from the exit-entry adapter (`sjsb-bbxx`, `sjts-bbjg`, `sjfk-bbjg`), travel approvals and
//! consent letters (`sjsb-cgsp`, `sjsb-tyh`), and the lend check against approvals.

use base64::Engine;
use chrono::{Duration, NaiveDate};
use custody_commands::ManualClock;
use custody_domain::consent_letter::{
    ConsentLetter, ConsentLetterState, ConsentPurpose as Purpose,
};
use custody_domain::document::{Anomaly, DocumentEvent};
use custody_domain::identifiers::{sm3_hex, SerialKind};
use custody_domain::person::{Person, PersonState};
use custody_domain::travel_approval::{TravelApproval, TravelApprovalState};
use custody_simulator::exit_entry::FilingAnswer;
use custody_simulator::generate::business_serial;
use custody_simulator::unit::{ConsentPurpose, FilingItemData, FilingKind, PersonData, TripPlan};
use custody_simulator::{DepositKind, SimulatedExitEntryAdapter, SimulatedUnitClient, Trip};
use custody_tests::samples::{date, time};
use custody_tests::{StoreKind, TestApp};
use serde_json::Value;

use crate::exit_entry::{
    assert_accepted, assert_refused, codes, document_events, event_count, kept_envelope, posted,
    record, registered_adapter, registered_unit_client, rejection_count, rejections, results,
    send_ok,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn person(app: &TestApp, who: &PersonData) -> Person {
    let rybs = who.person_id().expect("rybs");
    app.state.commands.load(&rybs).await.expect("load person")
}

fn item(client: &SimulatedUnitClient, kind: FilingKind, who: &PersonData) -> FilingItemData {
    client.filing_item(kind, who, "科员").expect("filing item")
}

/// Sends a filing list; answers its serial.
async fn file(app: &TestApp, client: &SimulatedUnitClient, items: Vec<FilingItemData>) -> String {
    let data = client
        .filing_list_data(items, app.now_ms())
        .expect("filing list");
    let answer = app
        .send(&client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign"))
        .await;
    assert_accepted(&answer, "filing list");
    assert!(
        results(&answer).iter().all(|r| r.status),
        "every person filed: {}",
        answer.1
    );
    data.filing_serial
}

/// The exit-entry administration answers a filing list.
async fn send_answers(
    app: &TestApp,
    adapter: &SimulatedExitEntryAdapter,
    serial: &str,
    answers: &[(&PersonData, FilingKind, FilingAnswer)],
) -> (u16, Value) {
    let answers: Vec<_> = answers
        .iter()
        .map(|(who, kind, verdict)| {
            SimulatedExitEntryAdapter::answer(&who.person_id().expect("rybs"), *kind, *verdict, "")
        })
        .collect();
    app.send(
        &adapter
            .filing_results(serial, &answers, app.now_ms())
            .expect("filing results"),
    )
    .await
}

/// What `sjfk-bbjg` answers for a list: (rybs, bbzt, bblx) per person.
async fn pull(
    app: &TestApp,
    client: &SimulatedUnitClient,
    serial: &str,
) -> Vec<(String, String, String)> {
    let answer = app
        .send(
            &client
                .filing_results_pull(serial, app.now_ms())
                .expect("pull"),
        )
        .await;
    assert_accepted(&answer, "pull filing results");
    assert_eq!(answer.1["ywlsh"], serial);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    answer.1["bbjg"]
        .as_array()
        .expect("bbjg")
        .iter()
        .map(|p| (text(&p["rybs"]), text(&p["bbzt"]), text(&p["bblx"])))
        .collect()
}

fn status_of(who: &PersonData, bbzt: &str, bblx: &str) -> (String, String, String) {
    (who.person_id().expect("rybs"), bbzt.into(), bblx.into())
}

#[tokio::test]
async fn filing_lists_are_answered_pulled_and_move_persons() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let client = registered_unit_client(&app, &unit).await;
        let adapter = registered_adapter(&app).await;
        let (first, second, third) = (
            PersonData::random(),
            PersonData::random(),
            PersonData::random(),
        );

        let data = client
            .filing_list_data(
                vec![
                    item(&client, FilingKind::New, &first),
                    item(&client, FilingKind::New, &second),
                    item(&client, FilingKind::New, &third),
                ],
                app.now_ms(),
            )
            .expect("filing list");
        let serial = data.filing_serial.clone();
        let list = client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign");
        let answer = app.send(&list).await;
        assert_accepted(&answer, "filing list");
        assert_eq!(answer.1["ywlsh"], serial.as_str());
        let keys: Vec<String> = results(&answer).into_iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            [&first, &second, &third].map(|p| p.person_id().expect("rybs"))
        );
        let filed = person(&app, &first).await;
        assert_eq!(filed.state, PersonState::Filing);
        assert_eq!(filed.unit.as_ref().map(|u| u.as_str()), Some(unit.as_str()));
        let details = filed.details.expect("details");
        assert_eq!(details.name, first.name);
        assert_eq!(details.citizen_id.as_str(), first.citizen_id);
        assert_eq!(details.phone.as_deref(), Some(first.phone.as_str()));
        assert_eq!(details.position.as_deref(), Some("科员"));
        assert_eq!(
            pull(&app, &client, &serial).await,
            [
                status_of(&first, "pending", "new"),
                status_of(&second, "pending", "new"),
                status_of(&third, "pending", "new"),
            ]
        );

        let results_answer = send_answers(
            &app,
            &adapter,
            &serial,
            &[
                (&first, FilingKind::New, FilingAnswer::Accepted),
                (&second, FilingKind::New, FilingAnswer::Accepted),
                (&third, FilingKind::New, FilingAnswer::Refused),
            ],
        )
        .await;
        assert_accepted(&results_answer, "filing results");
        assert_eq!(results_answer.1["ywlsh"], serial.as_str());
        assert_eq!(codes(&results_answer), ["0", "0", "0"]);
        assert_eq!(person(&app, &first).await.state, PersonState::Filed);
        assert_eq!(person(&app, &second).await.state, PersonState::Filed);
        assert_eq!(person(&app, &third).await.state, PersonState::Rejected);
        assert_eq!(
            pull(&app, &client, &serial).await,
            [
                status_of(&first, "accepted", "new"),
                status_of(&second, "accepted", "new"),
                status_of(&third, "refused", "new"),
            ]
        );

        // Every feed is idempotent: the list and the answers again, in new requests.
        let events = event_count(&app).await;
        let again = app
            .send(&client.sign_again(&list, app.now_ms()).expect("re-sign"))
            .await;
        assert_accepted(&again, "the list again");
        assert_eq!(again.1["duplicate"], true);
        assert!(results(&again).iter().all(|r| r.status && r.duplicate));
        let answers_again = send_answers(
            &app,
            &adapter,
            &serial,
            &[(&first, FilingKind::New, FilingAnswer::Accepted)],
        )
        .await;
        assert!(results(&answers_again)[0].duplicate);
        assert_eq!(event_count(&app).await, events);

        // A change (accepted: the new details hold) and a revocation (refused: still filed).
        let mut changed = first.clone();
        changed.phone = "13900000000".into();
        let mut change_item = item(&client, FilingKind::Change, &changed);
        change_item.position = "处长".into();
        let change_serial = file(&app, &client, vec![change_item]).await;
        assert_eq!(person(&app, &first).await.state, PersonState::Changing);
        let revoke_serial = file(
            &app,
            &client,
            vec![item(&client, FilingKind::Revoke, &second)],
        )
        .await;
        assert_eq!(person(&app, &second).await.state, PersonState::Revoking);
        assert_accepted(
            &send_answers(
                &app,
                &adapter,
                &change_serial,
                &[(&first, FilingKind::Change, FilingAnswer::Accepted)],
            )
            .await,
            "change accepted",
        );
        assert_accepted(
            &send_answers(
                &app,
                &adapter,
                &revoke_serial,
                &[(&second, FilingKind::Revoke, FilingAnswer::Refused)],
            )
            .await,
            "revocation refused",
        );
        let first_now = person(&app, &first).await;
        assert_eq!(first_now.state, PersonState::Filed);
        let details = first_now.details.expect("details");
        assert_eq!(details.phone.as_deref(), Some("13900000000"));
        assert_eq!(details.position.as_deref(), Some("处长"));
        assert_eq!(person(&app, &second).await.state, PersonState::Filed);
        assert_eq!(
            pull(&app, &client, &change_serial).await,
            [status_of(&first, "accepted", "change")]
        );
        assert_eq!(
            pull(&app, &client, &revoke_serial).await,
            [status_of(&second, "refused", "revoke")]
        );

        // Revoked for good, with a revocation that carries no personal data.
        let mut bare = item(&client, FilingKind::Revoke, &second);
        bare.sealed_person = String::new();
        let final_serial = file(&app, &client, vec![bare]).await;
        assert_accepted(
            &send_answers(
                &app,
                &adapter,
                &final_serial,
                &[(&second, FilingKind::Revoke, FilingAnswer::Accepted)],
            )
            .await,
            "revocation accepted",
        );
        assert_eq!(person(&app, &second).await.state, PersonState::Revoked);
        app.stop().await;
    }
}

#[tokio::test]
async fn one_bad_person_or_answer_does_not_block_the_list() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let client = registered_unit_client(&app, &unit).await;
        let adapter = registered_adapter(&app).await;
        let good = PersonData::random();
        let named = PersonData::random();
        let other_good = PersonData::random();

        // rybs of one person, rydata of another.
        let mut mismatched = item(&client, FilingKind::New, &named);
        mismatched.sealed_person = client.seal_person(&PersonData::random()).expect("seal");
        // Sealed to someone else's key.
        let foreign_key = custody_protocol::keys::generate_platform_encryption_key(
            "CN=someone-else",
            std::time::Duration::from_secs(3600),
            &mut rand::rng(),
        )
        .expect("foreign key");
        let mut elsewhere = item(&client, FilingKind::New, &PersonData::random());
        elsewhere.sealed_person = B64.encode(
            custody_protocol::envelope::seal(
                &serde_json::to_vec(&PersonData::random()).expect("json"),
                &foreign_key.certificate,
                &mut rand::rng(),
            )
            .expect("seal"),
        );
        let mut garbage = item(&client, FilingKind::New, &PersonData::random());
        garbage.sealed_person = B64.encode(b"not an envelope");
        let mut unknown_kind = item(&client, FilingKind::New, &PersonData::random());
        unknown_kind.kind = "upgrade".into();

        let events_before = event_count(&app).await;
        let rejections_before = rejection_count(&app).await;
        let data = client
            .filing_list_data(
                vec![
                    item(&client, FilingKind::New, &good),
                    mismatched.clone(),
                    elsewhere,
                    garbage,
                    unknown_kind,
                    item(&client, FilingKind::New, &other_good),
                ],
                app.now_ms(),
            )
            .expect("filing list");
        let request = client.sign("sjsb-bbxx", &data, app.now_ms()).expect("sign");
        let answer_list = app.send(&request).await;
        assert_accepted(&answer_list, "a list with bad persons");
        assert_eq!(
            codes(&answer_list),
            [
                "0",
                "E_INVALID_FIELD",
                "E_ENVELOPE_RECIPIENT",
                "E_BAD_ENVELOPE",
                "E_INVALID_FIELD",
                "0"
            ]
        );
        assert_eq!(event_count(&app).await, events_before + 2);
        assert_eq!(person(&app, &good).await.state, PersonState::Filing);
        assert_eq!(person(&app, &other_good).await.state, PersonState::Filing);
        assert_eq!(person(&app, &named).await.state, PersonState::Unknown);

        // Each refused person is kept with the whole envelope and its rybs in the message.
        assert_eq!(rejection_count(&app).await, rejections_before + 4);
        let kept = rejections(&app).await;
        let mismatch_kept = kept
            .iter()
            .find(|r| {
                r["error_msg"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&mismatched.person_id)
            })
            .expect("the mismatched person is kept");
        assert_eq!(mismatch_kept["error_code"], "E_INVALID_FIELD");
        assert_eq!(mismatch_kept["ywlsh"], data.filing_serial.as_str());
        assert_eq!(kept_envelope(&app, mismatch_kept).await, posted(&request));

        // Answers: one for a person not in the list, one of the wrong kind, one good.
        let answers = send_answers(
            &app,
            &adapter,
            &data.filing_serial,
            &[
                (&named, FilingKind::New, FilingAnswer::Accepted),
                (&good, FilingKind::Change, FilingAnswer::Accepted),
                (&other_good, FilingKind::New, FilingAnswer::Accepted),
            ],
        )
        .await;
        assert_accepted(&answers, "answers with bad ones");
        assert_eq!(codes(&answers), ["E_INVALID_FIELD", "E_INVALID_FIELD", "0"]);
        assert_eq!(person(&app, &good).await.state, PersonState::Filing);
        assert_eq!(person(&app, &other_good).await.state, PersonState::Filed);

        // Filed again while filing: the state machine refuses that person only.
        let twice = client
            .filing_list(
                vec![
                    item(&client, FilingKind::New, &good),
                    item(&client, FilingKind::New, &PersonData::random()),
                ],
                app.now_ms(),
            )
            .expect("filing list");
        let answer_twice = app.send(&twice).await;
        assert_eq!(codes(&answer_twice), ["E_ILLEGAL_TRANSITION", "0"]);
        app.stop().await;
    }
}

#[tokio::test]
async fn unit_refusals() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let other_unit = app.unit().await;
        let client = registered_unit_client(&app, &unit).await;
        let other = registered_unit_client(&app, &other_unit).await;
        let adapter = registered_adapter(&app).await;
        let stranger =
            SimulatedUnitClient::new(&unit, &app.platform_certificate_pem()).expect("client");
        let staff = PersonData::random();
        let serial = file(&app, &client, vec![item(&client, FilingKind::New, &staff)]).await;
        assert_accepted(
            &send_answers(
                &app,
                &adapter,
                &serial,
                &[(&staff, FilingKind::New, FilingAnswer::Accepted)],
            )
            .await,
            "filed",
        );
        let events_before = event_count(&app).await;
        let rejections_before = rejection_count(&app).await;
        let now = app.now_ms();

        // A list naming another unit than the signing client's.
        let mut data = client
            .filing_list_data(
                vec![item(&client, FilingKind::New, &PersonData::random())],
                now,
            )
            .expect("filing list");
        data.unit_credit_code = other_unit.clone();
        assert_refused(
            &app.send(&client.sign("sjsb-bbxx", &data, now).expect("sign"))
                .await,
            422,
            "E_SENDER_MISMATCH",
            "tyshxydm of another unit",
        );

        // A client nobody registered.
        assert_refused(
            &app.send(
                &stranger
                    .filing_list(
                        vec![item(&stranger, FilingKind::New, &PersonData::random())],
                        now,
                    )
                    .expect("filing list"),
            )
            .await,
            401,
            "E_SENDER_UNKNOWN",
            "unregistered unit client",
        );

        // The exit-entry adapter's key cannot send a unit's message.
        assert_refused(
            &app.send(&adapter.sign("sjsb-bbxx", &data, now).expect("sign"))
                .await,
            401,
            "E_SENDER_UNKNOWN",
            "adapter sending a filing list",
        );

        // Another unit's list, and a list that does not exist, answer alike.
        assert_refused(
            &app.send(&other.filing_results_pull(&serial, now).expect("pull"))
                .await,
            404,
            "E_NOT_FOUND",
            "another unit's list",
        );
        let nowhere = business_serial(SerialKind::Filing, 1, now, 1).expect("serial");
        assert_refused(
            &app.send(&client.filing_results_pull(&nowhere, now).expect("pull"))
                .await,
            404,
            "E_NOT_FOUND",
            "an unknown list",
        );

        // Another unit cannot approve a trip of this unit's staff.
        let trip = trip_plan(date(2026, 12, 1), date(2026, 12, 10), date(2026, 11, 20));
        assert_refused(
            &app.send(
                &other
                    .travel_approval(&staff.person_id().expect("rybs"), &trip, now)
                    .expect("approval"),
            )
            .await,
            // SPEC §3.6: custody, not the sender's identity, refuses this (docs/custody.md).
            403,
            "E_NOT_CUSTODIAN",
            "approval of another unit's person",
        );
        assert_eq!(event_count(&app).await, events_before, "nothing appended");
        assert_eq!(rejection_count(&app).await, rejections_before + 6);

        // ... nor change or revoke their filing: refused for that person, kept.
        let answer = app
            .send(
                &other
                    .filing_list(vec![item(&other, FilingKind::Revoke, &staff)], now)
                    .expect("filing list"),
            )
            .await;
        assert_accepted(&answer, "the envelope is fine");
        assert_eq!(codes(&answer), ["E_NOT_CUSTODIAN"]);
        assert_eq!(person(&app, &staff).await.state, PersonState::Filed);
        assert_eq!(event_count(&app).await, events_before);
        assert_eq!(rejection_count(&app).await, rejections_before + 7);
        app.stop().await;
    }
}

fn trip_plan(departure: NaiveDate, return_date: NaiveDate, approved_on: NaiveDate) -> TripPlan {
    TripPlan {
        destination: "HKG".into(),
        departure,
        return_date,
        reason: "探亲".into(),
        document_type: "513".into(),
        approved_on,
    }
}

#[tokio::test]
async fn travel_approvals_and_consent_letters_are_recorded_once() {
    for kind in StoreKind::ALL {
        let app = TestApp::spawn(kind).await;
        let unit = app.unit().await;
        let client = registered_unit_client(&app, &unit).await;
        let traveller = PersonData::random();
        let rybs = traveller.person_id().expect("rybs");
        let now = app.now_ms();

        let trip = trip_plan(date(2026, 12, 1), date(2026, 12, 10), date(2026, 11, 20));
        let data = client
            .travel_approval_data(&rybs, &trip, now)
            .expect("approval");
        let request = client.sign("sjsb-cgsp", &data, now).expect("sign");
        let answer = app.send(&request).await;
        assert_accepted(&answer, "approval");
        assert_eq!(answer.1["ywlsh"], data.approval_serial.as_str());
        assert_eq!(answer.1["duplicate"], false);
        let approval: TravelApproval = app
            .state
            .commands
            .load(&data.approval_serial)
            .await
            .expect("load approval");
        assert_eq!(approval.state, TravelApprovalState::Approved);
        assert_eq!(approval.valid_until(), Some(date(2026, 12, 25)));
        let details = approval.details.expect("details");
        assert_eq!(details.holder.as_str(), rybs);
        assert_eq!(details.unit.as_str(), unit);
        assert_eq!(details.destination, "HKG");
        assert_eq!(details.reason.as_deref(), Some("探亲"));
        assert_eq!(
            details.form.sm3,
            sm3_hex(&B64.decode(&data.form).expect("form"))
        );
        assert_eq!(details.form.signature, data.form_signature);

        let again = app
            .send(&client.sign_again(&request, app.now_ms()).expect("re-sign"))
            .await;
        assert_accepted(&again, "approval again");
        assert_eq!(again.1["duplicate"], true);
        let stored = app
            .store
            .log
            .events_of("TravelApproval", &data.approval_serial)
            .await
            .expect("events");
        assert_eq!(stored.len(), 1);
        assert_eq!(
            stored[0].metadata["idempotency_key"],
            data.approval_serial.as_str()
        );

        // Impossible dates and bad fields are refused whole.
        let backwards = trip_plan(date(2026, 12, 10), date(2026, 12, 1), date(2026, 11, 20));
        assert_refused(
            &app.send(
                &client
                    .travel_approval(&rybs, &backwards, now)
                    .expect("approval"),
            )
            .await,
            422,
            "E_INVALID_FIELD",
            "return before departure",
        );
        let mut bad_type = client
            .travel_approval_data(&rybs, &trip, now)
            .expect("approval");
        bad_type.document_type = "999".into();
        assert_refused(
            &app.send(&client.sign("sjsb-cgsp", &bad_type, now).expect("sign"))
                .await,
            422,
            "E_INVALID_FIELD",
            "zjlx 999",
        );
        let mut wrong_prefix = client
            .travel_approval_data(&rybs, &trip, now)
            .expect("approval");
        wrong_prefix.approval_serial = wrong_prefix.approval_serial.replacen("SP", "TY", 1);
        assert_refused(
            &app.send(&client.sign("sjsb-cgsp", &wrong_prefix, now).expect("sign"))
                .await,
            422,
            "E_INVALID_FIELD",
            "a TY serial for an approval",
        );
        let mut no_form = client
            .travel_approval_data(&rybs, &trip, now)
            .expect("approval");
        no_form.form = String::new();
        assert_refused(
            &app.send(&client.sign("sjsb-cgsp", &no_form, now).expect("sign"))
                .await,
            422,
            "E_MISSING_FIELD",
            "no approval form",
        );

        // A consent letter made for the approval.
        let letter = client
            .consent_letter_data(
                &rybs,
                Some(&data.approval_serial),
                ConsentPurpose::Endorsement,
                "513",
                date(2026, 11, 30),
                now,
            )
            .expect("letter");
        let letter_request = client.sign("sjsb-tyh", &letter, now).expect("sign");
        let answer = app.send(&letter_request).await;
        assert_accepted(&answer, "consent letter");
        assert_eq!(answer.1["ywlsh"], letter.letter_serial.as_str());
        let stored: ConsentLetter = app
            .state
            .commands
            .load(&letter.letter_serial)
            .await
            .expect("load letter");
        assert_eq!(stored.state, ConsentLetterState::Issued);
        assert_eq!(stored.valid_until(), Some(date(2027, 2, 28)));
        assert!(stored.is_valid_on(date(2027, 2, 28)));
        assert!(!stored.is_valid_on(date(2027, 3, 1)));
        let details = stored.details.expect("details");
        assert_eq!(details.purpose, Purpose::Endorsement);
        assert_eq!(
            details.travel_approval.as_deref(),
            Some(data.approval_serial.as_str())
        );
        let again = app
            .send(
                &client
                    .sign_again(&letter_request, app.now_ms())
                    .expect("re-sign"),
            )
            .await;
        assert_eq!(again.1["duplicate"], true);

        // A letter naming another person's approval, or an unknown purpose, is refused.
        let someone_else = PersonData::random().person_id().expect("rybs");
        let foreign = client
            .consent_letter_data(
                &someone_else,
                Some(&data.approval_serial),
                ConsentPurpose::NewDocument,
                "414",
                date(2026, 11, 30),
                now,
            )
            .expect("letter");
        assert_refused(
            &app.send(&client.sign("sjsb-tyh", &foreign, now).expect("sign"))
                .await,
            422,
            "E_INVALID_FIELD",
            "another person's approval",
        );
        let mut odd = client
            .consent_letter_data(
                &rybs,
                None,
                ConsentPurpose::Renewal,
                "414",
                date(2026, 11, 30),
                now,
            )
            .expect("letter");
        odd.purpose = "upgrade".into();
        assert_refused(
            &app.send(&client.sign("sjsb-tyh", &odd, now).expect("sign"))
                .await,
            422,
            "E_INVALID_FIELD",
            "crjywlx upgrade",
        );
        assert_eq!(
            app.store
                .log
                .aggregate_ids("ConsentLetter")
                .await
                .expect("ids")
                .len(),
            1
        );
        app.stop().await;
    }
}

/// The anomaly of the document's last withdrawal.
async fn last_lend_anomaly(
    app: &TestApp,
    record: &custody_protocol::DocumentRecord,
) -> Option<Anomaly> {
    document_events(app, record)
        .await
        .into_iter()
        .rev()
        .find_map(|e| match e {
            DocumentEvent::Withdrawn(w) => Some(w.anomaly),
            _ => None,
        })
        .expect("a withdrawal")
}

#[tokio::test]
async fn a_lend_counts_as_approved_only_with_a_valid_approval_of_its_holder() {
    for kind in StoreKind::ALL {
        let app =
            TestApp::spawn_with_clock(kind, ManualClock::at(time("2026-11-23T10:00:00+08:00")))
                .await;
        let cabinet = app.active_cabinet().await;
        let client = registered_unit_client(&app, cabinet.unit_credit_code()).await;
        let passport = record();
        let holder = PersonData::holder_of(&passport).person_id().expect("rybs");
        let drawer = cabinet.drawer(0);
        let returning = date(2026, 12, 5);

        // Approved 20 November for 25 November – 5 December: valid through 20 December.
        let trip = trip_plan(date(2026, 11, 25), returning, date(2026, 11, 20));
        let approval = client
            .travel_approval_data(&holder, &trip, app.now_ms())
            .expect("approval");
        send_ok(
            &app,
            client.sign("sjsb-cgsp", &approval, app.now_ms()),
            "approval",
        )
        .await;
        let someone_else = PersonData::random().person_id().expect("rybs");
        let foreign = client
            .travel_approval_data(&someone_else, &trip, app.now_ms())
            .expect("approval");
        send_ok(
            &app,
            client.sign("sjsb-cgsp", &foreign, app.now_ms()),
            "another person's approval",
        )
        .await;
        let never_recorded =
            business_serial(SerialKind::TravelApproval, 7, app.now_ms(), 7).expect("serial");

        send_ok(
            &app,
            cabinet.deposit(&passport, &drawer, DepositKind::New, app.now_ms()),
            "deposit",
        )
        .await;
        let lend_with = |serial: Option<&str>| {
            let trip = Trip {
                purpose: "探亲".into(),
                destination: "HKG".into(),
                travel_approval_serial: serial.map(str::to_string),
            };
            // Due back on the trip's return date, or the day it leaves if that is later (a
            // lend cannot be due before it leaves).
            let due = returning.max(app.clock.now().date_naive());
            cabinet.lend(&passport, &drawer, due, &trip, app.now_ms())
        };
        let give_back = || cabinet.deposit(&passport, &drawer, DepositKind::Return, app.now_ms());

        let cases: [(&str, Option<&str>, Option<Anomaly>); 4] = [
            ("valid approval", Some(&approval.approval_serial), None),
            (
                "another person's approval",
                Some(&foreign.approval_serial),
                Some(Anomaly::WithdrawalWithoutApproval),
            ),
            (
                "unknown approval",
                Some(&never_recorded),
                Some(Anomaly::WithdrawalWithoutApproval),
            ),
            (
                "no approval",
                None,
                Some(Anomaly::WithdrawalWithoutApproval),
            ),
        ];
        for (case, serial, expected) in cases {
            send_ok(&app, lend_with(serial), case).await;
            assert_eq!(last_lend_anomaly(&app, &passport).await, expected, "{case}");
            send_ok(&app, give_back(), "return").await;
        }

        // Its last valid day, and the day after.
        app.clock.set(time("2026-12-20T23:00:00+08:00"));
        send_ok(&app, lend_with(Some(&approval.approval_serial)), "last day").await;
        assert_eq!(last_lend_anomaly(&app, &passport).await, None, "last day");
        send_ok(&app, give_back(), "return").await;
        app.clock.advance(Duration::hours(2));
        send_ok(&app, lend_with(Some(&approval.approval_serial)), "expired").await;
        assert_eq!(
            last_lend_anomaly(&app, &passport).await,
            Some(Anomaly::WithdrawalWithoutApproval),
            "expired"
        );
        app.stop().await;
    }
}
