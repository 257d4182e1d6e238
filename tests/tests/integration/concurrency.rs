//! Concurrent writers on one aggregate, and idempotency by business serial.

use std::sync::Arc;

use custody_commands::{CommandError, Commands, ManualClock, Outcome};
use custody_domain::document::{
    ApprovalCheck, CrossingDirection, DocumentEvent, DocumentState, TRANSITIONS,
};
use custody_domain::transitions::next_state;
use custody_eventlog::{event_hash, EventLog, StoredEvent, GENESIS_HASH, PREVIOUS_HASH};
use custody_tests::samples::*;
use custody_tests::{StoreKind, TestStore};

fn commands_on(log: &EventLog) -> Arc<Commands> {
    Arc::new(Commands::new(
        log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    ))
}

/// The history must be gapless, duplicate-free, hash-linked (as stored) and legal under the
/// table (as opened).
/// A document's history as stored, checked by [`assert_legal_history`] against its opened form.
pub(crate) async fn legal_history_of(log: &EventLog, id: &str) -> Vec<StoredEvent> {
    let events = log.events_of("Document", id).await.expect("events");
    let opened = log
        .opened_events_of("Document", id)
        .await
        .expect("opened events");
    assert_legal_history(&events, &opened);
    events
}

fn assert_legal_history(events: &[StoredEvent], opened: &[StoredEvent]) {
    let mut state = DocumentState::Unknown;
    let mut previous = GENESIS_HASH.to_string();
    for (i, (event, opened)) in events.iter().zip(opened).enumerate() {
        assert_eq!(
            event.sequence,
            i as i64 + 1,
            "gapless, duplicate-free sequence"
        );
        assert_eq!(
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
            serde_json::from_value(opened.payload.clone()).expect("payload");
        state = next_state(TRANSITIONS, state, payload.kind()).unwrap_or_else(|| {
            panic!(
                "illegal {:?} from {state:?} at {}",
                payload.kind(),
                event.sequence
            )
        });
    }
}

async fn sixteen_writers_on_one_document(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = commands_on(&store.log);
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    let mut tasks = Vec::new();
    for task in 0..16usize {
        let commands = commands.clone();
        let number = number.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            let mut appended = 0usize;
            let mut conflicts = 0usize;
            for step in 0..12usize {
                let command = match (task + step) % 7 {
                    0 | 1 => deposit(&number),
                    2 => lend(planned_return(), ApprovalCheck::Valid),
                    3 => take_out(),
                    4 => crossing(CrossingDirection::Entry),
                    5 => return_date_reached(),
                    _ => correct_by_reconciliation(),
                };
                match commands.document(&id, command, unkeyed()).await {
                    Ok(Outcome::Appended) => appended += 1,
                    Ok(Outcome::Duplicate(_)) => panic!("no idempotency key was given"),
                    Err(CommandError::Domain(_)) => {}
                    Err(CommandError::Conflict { .. }) => conflicts += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
            (appended, conflicts)
        }));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await.expect("task").0;
    }
    let events = legal_history_of(&store.log, &id).await;
    assert!(
        events.len() > 16,
        "the writers made progress ({} events)",
        events.len()
    );
    assert_eq!(
        events.len(),
        appended,
        "every append reported, none invented"
    );
}

#[tokio::test]
async fn sixteen_writers_on_postgres_leave_a_gapless_legal_history() {
    sixteen_writers_on_one_document(StoreKind::Postgres).await;
}

#[tokio::test]
async fn sixteen_writers_on_the_embedded_store_leave_a_gapless_legal_history() {
    sixteen_writers_on_one_document(StoreKind::Embedded).await;
}

async fn same_serial_from_eight_tasks(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = commands_on(&store.log);
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    let serial = fresh_serial("RG");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (commands, number, id, serial) =
            (commands.clone(), number.clone(), id.clone(), serial.clone());
        // Each retry arrives as a new request (fresh reqid) with the same business serial.
        tasks.push(tokio::spawn(async move {
            commands
                .document(&id, deposit(&number), reported(&serial))
                .await
        }));
    }
    let mut appended = 0;
    let mut duplicates = 0;
    for task in tasks {
        match task.await.expect("task").expect("no error") {
            Outcome::Appended => appended += 1,
            Outcome::Duplicate(existing) => {
                assert_eq!(existing.aggregate_id, id);
                assert_eq!(existing.sequence, 1);
                duplicates += 1;
            }
        }
    }
    assert_eq!((appended, duplicates), (1, 7));
    let events = store.log.events_of("Document", &id).await.expect("events");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].metadata["ywlsh"].as_str(), Some(serial.as_str()));
}

#[tokio::test]
async fn eight_tasks_with_one_serial_append_one_event_on_postgres() {
    same_serial_from_eight_tasks(StoreKind::Postgres).await;
}

#[tokio::test]
async fn eight_tasks_with_one_serial_append_one_event_on_the_embedded_store() {
    same_serial_from_eight_tasks(StoreKind::Embedded).await;
}

#[tokio::test]
async fn a_serial_stays_spent_across_a_restart() {
    for kind in StoreKind::ALL {
        let store = TestStore::new(kind).await;
        let number = fresh_document_number();
        let id = document_id(&number).to_string();
        let serial = fresh_serial("RG");
        let first = commands_on(&store.log);
        assert_eq!(
            first
                .document(&id, deposit(&number), reported(&serial))
                .await
                .expect("first"),
            Outcome::Appended
        );
        drop(first);
        // A new process: a new connection pool on the same database.
        let reopened = match kind {
            StoreKind::Embedded => EventLog::open_embedded(store.data_dir.path()).await,
            StoreKind::Postgres => match &store.choice {
                custody_api::StoreChoice::Postgres { url } => {
                    EventLog::connect_postgres(url, 4).await
                }
                custody_api::StoreChoice::Embedded => unreachable!(),
            },
        }
        .expect("reopen the store");
        let second = commands_on(&reopened);
        assert!(matches!(
            second
                .document(&id, deposit(&number), reported(&serial))
                .await,
            Ok(Outcome::Duplicate(_))
        ));
        assert_eq!(
            reopened
                .events_of("Document", &id)
                .await
                .expect("events")
                .len(),
            1
        );
    }
}

#[tokio::test]
async fn a_serial_reused_for_another_document_is_refused() {
    for kind in StoreKind::ALL {
        let store = TestStore::new(kind).await;
        let commands = commands_on(&store.log);
        let serial = fresh_serial("RG");
        let first = fresh_document_number();
        let second = fresh_document_number();
        commands
            .document(
                document_id(&first).as_str(),
                deposit(&first),
                reported(&serial),
            )
            .await
            .expect("first deposit");
        let error = commands
            .document(
                document_id(&second).as_str(),
                deposit(&second),
                reported(&serial),
            )
            .await
            .expect_err("the serial belongs to another document");
        assert_eq!(
            custody_api::WireError::from(error).code.as_str(),
            "E_SERIAL_REUSED"
        );
        assert!(store
            .log
            .events_of("Document", document_id(&second).as_str())
            .await
            .expect("events")
            .is_empty());
    }
}
