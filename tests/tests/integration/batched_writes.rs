//! The command path's other batched statements (issue 11, `eventlog/src/batcher.rs`): the
//! replay window and the new persons' data keys of concurrent requests, each written in one
//! statement per batch, and the aggregates' history reads, each request answered on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_commands::{CommandError, Commands, ManualClock, Outcome};
use custody_domain::document::{ApprovalCheck, Document, DocumentCommand, DocumentState};
use custody_domain::identifiers::{CitizenId, DocumentNumber, PersonId};
use custody_domain::person::Person;
use custody_eventlog::{BatchStats, EventLog};
use custody_tests::samples::*;
use custody_tests::{StoreKind, TestStore};

use crate::concurrency::legal_history_of;

/// Waits until `queued` items wait behind a hold.
async fn until_queued(what: &str, queued: usize, stats: impl Fn() -> BatchStats) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats().queued < queued {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} queued of {queued}",
            stats().queued
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn commands_on(log: &EventLog) -> Arc<Commands> {
    Arc::new(Commands::new(
        log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    ))
}

type Answer = tokio::task::JoinHandle<Result<Outcome, CommandError>>;

fn send(commands: &Arc<Commands>, number: &DocumentNumber, command: DocumentCommand) -> Answer {
    let (commands, id) = (commands.clone(), document_id(number).to_string());
    tokio::spawn(async move { commands.document(&id, command, unkeyed()).await })
}

/// One batch holds eight fresh request ids, each sent twice, and one id seen before: each
/// fresh id is fresh exactly once, the one seen before is a replay, and every id is stored once.
async fn replay_window(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let platform = store.log.platform().clone();
    let seen_before = format!("REQ-{}", uuid::Uuid::new_v4());
    assert!(platform
        .remember_request(&seen_before, "XJH-Q2555061", 1)
        .await
        .expect("remember"));
    let before = platform.replay_window_stats();
    let hold = platform.hold_replay_window().await;
    let fresh: Vec<String> = (0..8)
        .map(|_| format!("REQ-{}", uuid::Uuid::new_v4()))
        .collect();
    let mut asked = Vec::new();
    for reqid in fresh.iter().chain(&fresh).chain([&seen_before]) {
        let (platform, reqid) = (platform.clone(), reqid.clone());
        asked.push((
            reqid.clone(),
            tokio::spawn(async move { platform.remember_request(&reqid, "XJH-Q2555061", 2).await }),
        ));
    }
    until_queued("replay window", asked.len() - 1, || {
        platform.replay_window_stats()
    })
    .await;
    drop(hold);
    let mut fresh_answers = std::collections::HashMap::new();
    for (reqid, task) in asked {
        let is_fresh = task.await.expect("task").expect("remember");
        if reqid == seen_before {
            assert!(!is_fresh, "an id seen before is a replay");
        } else if is_fresh {
            *fresh_answers.entry(reqid).or_insert(0) += 1;
        }
    }
    for reqid in &fresh {
        assert_eq!(
            fresh_answers.get(reqid),
            Some(&1),
            "{reqid} fresh exactly once"
        );
    }
    let after = platform.replay_window_stats();
    assert!(
        after.largest >= 9,
        "the eight fresh ids and the replay shared a batch: {after:?}"
    );
    assert!(after.items - before.items >= 17, "{before:?} {after:?}");
    let stored: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM seen_requests WHERE reqid IN ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&fresh[0])
    .bind(&fresh[1])
    .bind(&fresh[2])
    .bind(&fresh[3])
    .bind(&fresh[4])
    .bind(&fresh[5])
    .bind(&fresh[6])
    .bind(&fresh[7])
    .bind(&seen_before)
    .fetch_one(platform.pool())
    .await
    .expect("count");
    assert_eq!(stored, 9);
}

#[tokio::test]
async fn one_batch_of_request_ids_answers_each_on_its_own_on_postgres() {
    replay_window(StoreKind::Postgres).await;
}

#[tokio::test]
async fn one_batch_of_request_ids_answers_each_on_its_own_on_the_embedded_store() {
    replay_window(StoreKind::Embedded).await;
}

/// A deposit whose holder has the given name (a person of their own).
fn deposit_for(number: &DocumentNumber, name: &str) -> DocumentCommand {
    match deposit(number) {
        DocumentCommand::Deposit(mut deposited) => {
            let mut record = record(number);
            record.chinese_name = name.into();
            deposited.record = record.into();
            DocumentCommand::Deposit(deposited)
        }
        _ => unreachable!("deposit() is a deposit"),
    }
}

/// Seven deposits wait for their holders' new data keys: three name one new person, four name
/// four others. Every deposit is appended and opens with its holder's name, and each person has
/// exactly one stored key: the deposits of the first person share one, whichever batch made it.
async fn new_person_keys(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let log = &store.log;
    let commands = commands_on(log);
    let personal = log.personal_data().expect("the test store seals").clone();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let names: Vec<String> = ["甲", "甲", "甲", "乙", "丙", "丁", "戊"]
        .iter()
        .map(|n| format!("{n}{tag}"))
        .collect();
    let numbers: Vec<DocumentNumber> = names.iter().map(|_| fresh_document_number()).collect();
    let before = personal.new_key_stats();
    let hold = personal.hold_new_keys().await;
    let tasks: Vec<Answer> = numbers
        .iter()
        .zip(&names)
        .map(|(number, name)| send(&commands, number, deposit_for(number, name)))
        .collect();
    until_queued("new keys", names.len() - 1, || personal.new_key_stats()).await;
    drop(hold);
    for task in tasks {
        assert_eq!(
            task.await.expect("task").expect("deposit"),
            Outcome::Appended
        );
    }
    let after = personal.new_key_stats();
    assert!(
        after.largest >= 5,
        "the five persons shared a batch: {after:?}"
    );
    assert!(after.items - before.items >= 7, "{before:?} {after:?}");
    let citizen: CitizenId = CITIZEN_ID.parse().expect("citizen id");
    for name in ["甲", "乙", "丙", "丁", "戊"] {
        let person = PersonId::of(&citizen, &format!("{name}{tag}")).to_string();
        let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM person_keys WHERE person = $1")
            .bind(&person)
            .fetch_one(log.platform().pool())
            .await
            .expect("count");
        assert_eq!(keys, 1, "one key for {name}");
    }
    for (number, name) in numbers.iter().zip(&names) {
        let events = legal_history_of(log, &document_id(number).to_string()).await;
        assert_eq!(events.len(), 1);
        let opened = log
            .opened_events_of("Document", &document_id(number).to_string())
            .await
            .expect("opened");
        assert_eq!(
            opened[0].payload["Deposited"]["record"]["chinese_name"].as_str(),
            Some(name.as_str()),
            "the deposit opens with its holder's name"
        );
    }
}

#[tokio::test]
async fn new_persons_keys_are_stored_once_in_one_batch_on_postgres() {
    new_person_keys(StoreKind::Postgres).await;
}

#[tokio::test]
async fn new_persons_keys_are_stored_once_in_one_batch_on_the_embedded_store() {
    new_person_keys(StoreKind::Embedded).await;
}

/// One batch of history reads (`eventlog/src/history_reads.rs`) holds loads of three
/// documents with histories of one, two and three events, a document with none, a person,
/// and one document asked for twice: every load gets exactly its own aggregate, as a load
/// alone would.
async fn history_reads(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let log = &store.log;
    let commands = commands_on(log);
    let numbers: Vec<DocumentNumber> = (0..4).map(|_| fresh_document_number()).collect();
    let ids: Vec<String> = numbers.iter().map(|n| document_id(n).to_string()).collect();
    let histories: [Vec<DocumentCommand>; 3] = [
        vec![deposit(&numbers[0])],
        vec![
            deposit(&numbers[1]),
            lend(planned_return(), ApprovalCheck::Valid),
        ],
        vec![
            deposit(&numbers[2]),
            lend(planned_return(), ApprovalCheck::Valid),
            return_date_reached(),
        ],
    ];
    for (id, history) in ids.iter().zip(histories) {
        for command in history {
            commands
                .document(id, command, unkeyed())
                .await
                .expect("command");
        }
    }
    // What each aggregate is, read alone.
    let mut alone = Vec::new();
    for id in &ids {
        alone.push(commands.load::<Document>(id).await.expect("load"));
    }
    let person = holder().to_string();
    let person_alone = commands.load::<Person>(&person).await.expect("load");

    let before = log.history_read_stats();
    let hold = log.hold_history_reads().await;
    let mut asked = Vec::new();
    for id in ids.iter().chain([&ids[1]]) {
        let (commands, id) = (commands.clone(), id.clone());
        asked.push(tokio::spawn(
            async move { commands.load::<Document>(&id).await },
        ));
    }
    let person_load = {
        let (commands, person) = (commands.clone(), person.clone());
        tokio::spawn(async move { commands.load::<Person>(&person).await })
    };
    until_queued("history reads", asked.len(), || log.history_read_stats()).await;
    drop(hold);
    let mut loaded = Vec::new();
    for task in asked {
        loaded.push(task.await.expect("task").expect("load"));
    }
    for (index, expected) in alone.iter().enumerate() {
        assert_eq!(&loaded[index], expected, "document {index}");
    }
    assert_eq!(loaded[4], alone[1], "the document asked for twice");
    assert_eq!(
        loaded[3],
        Document::default(),
        "no events: the empty aggregate"
    );
    assert_eq!(
        [loaded[0].state, loaded[1].state, loaded[2].state],
        [
            DocumentState::InCabinet,
            DocumentState::Withdrawn,
            DocumentState::AwaitingReturn
        ]
    );
    assert_eq!(
        person_load.await.expect("task").expect("load"),
        person_alone
    );
    let after = log.history_read_stats();
    assert!(
        after.largest >= 5,
        "one batch held the held loads: {after:?}"
    );
    assert_eq!(after.items - before.items, 6, "{after:?}");
}

#[tokio::test]
async fn one_batch_of_history_reads_answers_each_load_with_its_own_aggregate_on_postgres() {
    history_reads(StoreKind::Postgres).await;
}

#[tokio::test]
async fn one_batch_of_history_reads_answers_each_load_with_its_own_aggregate_on_the_embedded_store()
{
    history_reads(StoreKind::Embedded).await;
}
