//! Group commit (issue 11): the commits of concurrent commands appended in one statement, each
//! still decided on its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_commands::{CommandError, Commands, ManualClock, Outcome};
use custody_domain::document::ApprovalCheck;
use custody_tests::samples::*;
use custody_tests::{StoreKind, TestStore};

use crate::concurrency::legal_history_of;

type Answer = tokio::task::JoinHandle<Result<Outcome, CommandError>>;

fn send(
    commands: &Arc<Commands>,
    id: &str,
    command: custody_domain::document::DocumentCommand,
    metadata: custody_domain::EventMetadata,
) -> Answer {
    let (commands, id) = (commands.clone(), id.to_string());
    tokio::spawn(async move { commands.document(&id, command, metadata).await })
}

async fn answer(task: Answer) -> Result<Outcome, CommandError> {
    task.await.expect("task")
}

/// One batch holds: two new deposits; an illegal command; two lends of one document decided on
/// the same state (one conflicts); twins of one report; and a report whose serial another
/// document already spent. Exactly the legal, first-come events are appended.
async fn one_batch_of_mixed_commands(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let log = &store.log;
    let commands = Arc::new(Commands::new(
        log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    ));
    let number = |_: u8| fresh_document_number();
    let (spent, lent, fresh_a, fresh_b, twin, reuser, never) = (
        number(0),
        number(1),
        number(2),
        number(3),
        number(4),
        number(5),
        number(6),
    );
    let id = |n: &custody_domain::identifiers::DocumentNumber| document_id(n).to_string();
    let spent_serial = fresh_serial("RG");
    for (n, metadata) in [(&spent, reported(&spent_serial)), (&lent, unkeyed())] {
        let outcome = commands
            .document(&id(n), deposit(n), metadata)
            .await
            .expect("set-up deposit");
        assert_eq!(outcome, Outcome::Appended);
    }
    let before = log.append_stats();
    let twin_serial = fresh_serial("RG");

    let hold = log.hold_appends().await;
    let first_a = send(
        &commands,
        &id(&fresh_a),
        deposit(&fresh_a),
        reported(&fresh_serial("RG")),
    );
    let first_b = send(
        &commands,
        &id(&fresh_b),
        deposit(&fresh_b),
        reported(&fresh_serial("RG")),
    );
    let illegal = send(&commands, &id(&never), take_out(), unkeyed());
    let lends = [
        send(
            &commands,
            &id(&lent),
            lend(planned_return(), ApprovalCheck::Valid),
            unkeyed(),
        ),
        send(
            &commands,
            &id(&lent),
            lend(planned_return(), ApprovalCheck::Valid),
            unkeyed(),
        ),
    ];
    let twins = [
        send(
            &commands,
            &id(&twin),
            deposit(&twin),
            reported(&twin_serial),
        ),
        send(
            &commands,
            &id(&twin),
            deposit(&twin),
            reported(&twin_serial),
        ),
    ];
    let reused = send(
        &commands,
        &id(&reuser),
        deposit(&reuser),
        reported(&spent_serial),
    );

    // Seven commits are decided and wait for an appender (the batch loop has taken the first
    // out of the queue); the illegal command never reached the queue and is answered already.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.queued_appends() < 6 {
        assert!(
            Instant::now() < deadline,
            "the commits did not queue: {}",
            log.queued_appends()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        illegal.is_finished(),
        "an illegal command waits for no batch"
    );
    assert!(matches!(
        answer(illegal).await,
        Err(CommandError::Domain(_))
    ));
    drop(hold);

    assert_eq!(answer(first_a).await.expect("first_a"), Outcome::Appended);
    assert_eq!(answer(first_b).await.expect("first_b"), Outcome::Appended);
    let mut lend_answers = Vec::new();
    for task in lends {
        lend_answers.push(answer(task).await);
    }
    assert_eq!(
        lend_answers
            .iter()
            .filter(|a| matches!(a, Ok(Outcome::Appended)))
            .count(),
        1,
        "one lend wins: {lend_answers:?}"
    );
    assert_eq!(
        lend_answers
            .iter()
            .filter(|a| matches!(a, Err(CommandError::Domain(_))))
            .count(),
        1,
        "the other conflicts, is decided again on the lent document and refused: {lend_answers:?}"
    );
    let mut twin_answers = Vec::new();
    for task in twins {
        twin_answers.push(answer(task).await.expect("twin"));
    }
    assert_eq!(
        twin_answers
            .iter()
            .filter(|a| **a == Outcome::Appended)
            .count(),
        1,
        "{twin_answers:?}"
    );
    assert!(
        twin_answers
            .iter()
            .any(|a| matches!(a, Outcome::Duplicate(e) if e.sequence == 1)),
        "{twin_answers:?}"
    );
    assert!(
        matches!(answer(reused).await, Err(CommandError::SerialReused { .. })),
        "the idempotency index refused the spent serial inside the batch"
    );

    let after = log.append_stats();
    assert!(
        after.largest >= 5,
        "the held commits went in one statement (largest batch {})",
        after.largest
    );
    // The events appended: the two deposits, one lend, one twin; nothing for the illegal
    // command, the losing lend, the second twin or the reused serial.
    assert_eq!(after.events - before.events, 4, "{before:?} -> {after:?}");
    for (n, expected) in [
        (&fresh_a, 1),
        (&fresh_b, 1),
        (&lent, 2),
        (&twin, 1),
        (&spent, 1),
        (&reuser, 0),
        (&never, 0),
    ] {
        let events = legal_history_of(log, &id(n)).await;
        assert_eq!(events.len(), expected, "{n}");
    }
}

#[tokio::test]
async fn one_batch_appends_exactly_the_legal_uncontested_commands_on_postgres() {
    one_batch_of_mixed_commands(StoreKind::Postgres).await;
}

#[tokio::test]
async fn one_batch_appends_exactly_the_legal_uncontested_commands_on_the_embedded_store() {
    one_batch_of_mixed_commands(StoreKind::Embedded).await;
}
