//! Hot aggregates (issue 11, `commands/src/hot.rs`): a command decides on the aggregate it last
//! held in memory, and the append checks it. Two command services over one store stand for two
//! instances: what one appends, the other's memory does not know.

use std::sync::Arc;

use custody_commands::{Commands, HotStats, ManualClock, Outcome};
use custody_domain::document::Document;
use custody_domain::document::{ApprovalCheck, CrossingDirection, DocumentState};
use custody_eventlog::EventLog;
use custody_tests::samples::*;
use custody_tests::{StoreKind, TestStore};

use crate::concurrency::legal_history_of;

fn instance(log: &EventLog) -> Commands {
    Commands::new(
        log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    )
}

/// What `commands` did to its memory since `before`: (hits, misses, stale).
fn since(commands: &Commands, before: HotStats) -> (u64, u64, u64) {
    let now = commands.hot_aggregates();
    (
        now.hits - before.hits,
        now.misses - before.misses,
        now.stale - before.stale,
    )
}

/// An instance's second command on a document is decided on the document it holds: no load.
async fn a_held_document_needs_no_load(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = instance(&store.log);
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    let before = commands.hot_aggregates();
    let deposited = commands.document(&id, deposit(&number), unkeyed()).await;
    assert_eq!(deposited.expect("deposit"), Outcome::Appended);
    assert_eq!(
        since(&commands, before),
        (0, 1, 0),
        "the first command loads"
    );
    let lent = commands
        .document(&id, lend(planned_return(), ApprovalCheck::Valid), unkeyed())
        .await;
    assert_eq!(lent.expect("lend"), Outcome::Appended);
    assert_eq!(
        since(&commands, before),
        (1, 1, 0),
        "the second one does not"
    );
    let events = legal_history_of(&store.log, &id).await;
    assert_eq!(events.len(), 2);
    assert_eq!(
        commands.load::<Document>(&id).await.expect("load").state,
        DocumentState::Withdrawn
    );
}

/// Instance A holds a document in the cabinet; instance B lends it out. A's next command, a
/// border crossing (legal in either state), is decided on what A holds: its append finds the
/// sequence taken, and A decides again on a fresh load. Nothing is lost, nothing doubled, and the
/// chain stays whole.
async fn a_held_document_behind_the_store_is_caught_by_the_append(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let (a, b) = (instance(&store.log), instance(&store.log));
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    assert_eq!(
        a.document(&id, deposit(&number), unkeyed())
            .await
            .expect("deposit"),
        Outcome::Appended
    );
    assert_eq!(
        b.document(&id, lend(planned_return(), ApprovalCheck::Valid), unkeyed())
            .await
            .expect("lend on the other instance"),
        Outcome::Appended
    );
    let before = a.hot_aggregates();
    let crossed = a
        .document(&id, crossing(CrossingDirection::Exit), unkeyed())
        .await;
    assert_eq!(crossed.expect("crossing"), Outcome::Appended);
    assert_eq!(
        since(&a, before),
        (1, 0, 1),
        "decided on memory, found behind, decided again"
    );
    // Gapless, each event linked to the one before (the chain), every transition legal.
    let events = legal_history_of(&store.log, &id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert!(kinds[2].contains("Crossed"), "{kinds:?}");
    // What A holds now is the store's state: the next command is a hit that commits.
    let before = a.hot_aggregates();
    assert_eq!(
        a.document(&id, return_date_reached(), unkeyed())
            .await
            .expect("return date"),
        Outcome::Appended
    );
    assert_eq!(since(&a, before), (1, 0, 0));
}

/// A command that what A holds would refuse (a return date reached on a document A still holds
/// in the cabinet) is not refused from memory: it is decided again on a fresh load, where B's
/// lend makes it legal.
async fn a_refusal_is_never_answered_from_memory(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let (a, b) = (instance(&store.log), instance(&store.log));
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    a.document(&id, deposit(&number), unkeyed())
        .await
        .expect("deposit");
    b.document(&id, lend(planned_return(), ApprovalCheck::Valid), unkeyed())
        .await
        .expect("lend on the other instance");
    let before = a.hot_aggregates();
    let reached = a.document(&id, return_date_reached(), unkeyed()).await;
    assert_eq!(reached.expect("return date reached"), Outcome::Appended);
    assert_eq!(since(&a, before), (1, 0, 1));
    assert_eq!(
        a.load::<Document>(&id).await.expect("load").state,
        DocumentState::AwaitingReturn
    );
    // A refusal on the store's own state is still a refusal, and appends nothing.
    let again = a.document(&id, return_date_reached(), unkeyed()).await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(legal_history_of(&store.log, &id).await.len(), 3);
}

/// With no memory at all, every command loads: the same outcomes.
async fn no_memory_loads_every_time(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = instance(&store.log).with_hot_aggregates(0);
    let number = fresh_document_number();
    let id = document_id(&number).to_string();
    commands
        .document(&id, deposit(&number), unkeyed())
        .await
        .expect("deposit");
    commands
        .document(&id, lend(planned_return(), ApprovalCheck::Valid), unkeyed())
        .await
        .expect("lend");
    let stats = commands.hot_aggregates();
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 2, 0));
    assert_eq!(legal_history_of(&store.log, &id).await.len(), 2);
}

#[tokio::test]
async fn a_held_document_needs_no_load_on_postgres() {
    a_held_document_needs_no_load(StoreKind::Postgres).await;
}

#[tokio::test]
async fn a_held_document_needs_no_load_on_the_embedded_store() {
    a_held_document_needs_no_load(StoreKind::Embedded).await;
}

#[tokio::test]
async fn a_held_document_behind_the_store_is_caught_by_the_append_on_postgres() {
    a_held_document_behind_the_store_is_caught_by_the_append(StoreKind::Postgres).await;
}

#[tokio::test]
async fn a_held_document_behind_the_store_is_caught_by_the_append_on_the_embedded_store() {
    a_held_document_behind_the_store_is_caught_by_the_append(StoreKind::Embedded).await;
}

#[tokio::test]
async fn a_refusal_is_never_answered_from_memory_on_postgres() {
    a_refusal_is_never_answered_from_memory(StoreKind::Postgres).await;
}

#[tokio::test]
async fn a_refusal_is_never_answered_from_memory_on_the_embedded_store() {
    a_refusal_is_never_answered_from_memory(StoreKind::Embedded).await;
}

#[tokio::test]
async fn no_memory_loads_every_time_on_postgres() {
    no_memory_loads_every_time(StoreKind::Postgres).await;
}

#[tokio::test]
async fn no_memory_loads_every_time_on_the_embedded_store() {
    no_memory_loads_every_time(StoreKind::Embedded).await;
}
