//! Property: for random command sequences on random documents, the state the aggregate reports
//! equals the state rebuilt by replaying the stored events, on both stores.

use std::sync::Arc;

use cqrs_es::Aggregate;
use custody_commands::{CommandError, Commands, ManualClock};
use custody_domain::document::{
    ApprovalCheck, CrossingDirection, Document, DocumentCommand, DocumentEvent,
};
use custody_domain::identifiers::DocumentNumber;
use custody_eventlog::{event_hash, GENESIS_HASH, PREVIOUS_HASH};
use custody_tests::samples::*;
use custody_tests::{StoreKind, TestStore};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone, Copy)]
enum Step {
    FileApplication,
    ConfirmIssuance,
    Deposit,
    Lend,
    LendWithoutApproval,
    TakeOut,
    Abnormal,
    Exit,
    Entry,
    ReturnDateReached,
    Cancel,
    Correct,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::FileApplication),
        1 => Just(Step::ConfirmIssuance),
        3 => Just(Step::Deposit),
        2 => Just(Step::Lend),
        1 => Just(Step::LendWithoutApproval),
        1 => Just(Step::TakeOut),
        1 => Just(Step::Abnormal),
        1 => Just(Step::Exit),
        1 => Just(Step::Entry),
        1 => Just(Step::ReturnDateReached),
        1 => Just(Step::Cancel),
        1 => Just(Step::Correct),
    ]
}

fn command(step: Step, number: &DocumentNumber) -> DocumentCommand {
    match step {
        Step::FileApplication => file_application(),
        Step::ConfirmIssuance => confirm_issuance(number),
        Step::Deposit => deposit(number),
        Step::Lend => lend(planned_return(), ApprovalCheck::Valid),
        Step::LendWithoutApproval => lend(planned_return(), ApprovalCheck::Missing),
        Step::TakeOut => take_out(),
        Step::Abnormal => abnormal_withdrawal(),
        Step::Exit => crossing(CrossingDirection::Exit),
        Step::Entry => crossing(CrossingDirection::Entry),
        Step::ReturnDateReached => return_date_reached(),
        Step::Cancel => cancel(),
        Step::Correct => correct_by_reconciliation(),
    }
}

fn replay_equals_aggregate(kind: StoreKind, cases: u32) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = runtime.block_on(TestStore::new(kind));
    let commands = Commands::new(
        store.log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    );
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(step(), 1..40), |steps| {
            runtime.block_on(async {
                let number = fresh_document_number();
                let id = document_id(&number);
                // The aggregate as it reports itself while handling commands.
                let mut reported = Document::default();
                let mut appended = 0;
                for step in steps {
                    let command = command(step, &number);
                    let decided = reported.decide(command.clone());
                    let result = commands.document(id.as_str(), command, unkeyed()).await;
                    match (decided, result) {
                        (Ok(event), Ok(_)) => {
                            reported.apply(event);
                            appended += 1;
                        }
                        (Err(expected), Err(CommandError::Domain(actual))) => {
                            prop_assert_eq!(expected, actual)
                        }
                        (decided, result) => {
                            return Err(TestCaseError::fail(format!(
                            "{step:?}: aggregate decided {decided:?}, service answered {result:?}"
                        )))
                        }
                    }
                }
                let stored = store
                    .log
                    .events_of("Document", id.as_str())
                    .await
                    .expect("events");
                prop_assert_eq!(stored.len(), appended);
                let opened = store
                    .log
                    .opened_events_of("Document", id.as_str())
                    .await
                    .expect("events");
                let mut replayed = Document::default();
                let mut previous = GENESIS_HASH.to_string();
                for (i, (event, opened)) in stored.iter().zip(&opened).enumerate() {
                    prop_assert_eq!(event.sequence, i as i64 + 1);
                    prop_assert_eq!(
                        event.metadata[PREVIOUS_HASH].as_str(),
                        Some(previous.as_str())
                    );
                    previous = event_hash(&cqrs_es::persist::SerializedEvent::new(
                        event.aggregate_id.clone(),
                        event.sequence as usize,
                        event.aggregate_type.clone(),
                        event.event_type.clone(),
                        event.event_version.clone(),
                        event.payload.clone(),
                        event.metadata.clone(),
                    ));
                    let payload: DocumentEvent =
                        serde_json::from_value(opened.payload.clone()).expect("stored payload");
                    replayed.apply(payload);
                }
                let loaded: Document = commands.load(id.as_str()).await.expect("load");
                prop_assert_eq!(&replayed, &reported);
                prop_assert_eq!(&loaded, &reported);
                Ok(())
            })
        })
        .unwrap_or_else(|failure| panic!("{kind:?}: {failure}"));
}

#[test]
fn replay_equals_aggregate_on_the_embedded_store() {
    replay_equals_aggregate(StoreKind::Embedded, 64);
}

#[test]
fn replay_equals_aggregate_on_postgres() {
    replay_equals_aggregate(StoreKind::Postgres, 64);
}
