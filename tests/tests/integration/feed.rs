//! The commit-ordered log, the relay to NATS JetStream and the two feeds.
//!
//! Tests on the shared nats-server use a stream and subject prefix of their own; tests that kill
//! and restart nats-server start their own.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use custody_commands::{Commands, ManualClock, Outcome};
use custody_eventlog::{Backend, CommitPosition, CommittedEvent, EventLog, StoredEvent};
use custody_projections::feed::{
    wire, Cursor, EventFeed, FeedItem, JetStreamFeed, StoreFeed, StreamSettings,
};
use custody_projections::relay::{Relay, RelayConfig};
use custody_tests::samples::*;
use custody_tests::{nats, NatsServer, StoreKind, TestStore};

/// No test here may hang: each runs under this limit.
const LIMIT: Duration = Duration::from_secs(120);
/// How long to wait for something that should happen soon.
const SOON: Duration = Duration::from_secs(30);

async fn bounded<F: Future>(what: &str, test: F) -> F::Output {
    tokio::time::timeout(LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {LIMIT:?}"))
}

/// Polls `check` until it holds, at most [`SOON`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + SOON;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {SOON:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn commands_on(log: &EventLog) -> Arc<Commands> {
    Arc::new(Commands::new(
        log.clone(),
        Arc::new(ManualClock::at(time("2026-11-23T12:00:00+08:00"))),
    ))
}

/// A stream and subjects no other test uses.
fn own_stream() -> StreamSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    StreamSettings::new(format!("FEED_{id}"), format!("feedtest.{id}"))
}

/// Appends `n` events, each the deposit of a new document.
async fn append(commands: &Commands, n: usize) {
    for _ in 0..n {
        let number = fresh_document_number();
        let id = document_id(&number).to_string();
        let outcome = commands
            .document(&id, deposit(&number), unkeyed())
            .await
            .expect("append an event");
        assert_eq!(outcome, Outcome::Appended);
    }
}

/// Waits until `n` events are visible to a commit-order reader. The snapshot xmin is
/// cluster-wide, so another test's open transaction (even in another database) holds events
/// back for a while.
async fn visible(log: &EventLog, n: i64) {
    eventually("events visible", || async {
        log.count_committed_after(CommitPosition::START)
            .await
            .expect("count")
            == n
    })
    .await;
}

async fn committed(log: &EventLog) -> Vec<CommittedEvent> {
    log.read_committed(CommitPosition::START, 100_000)
        .await
        .expect("read the committed log")
}

async fn jetstream_of(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("connect to NATS"))
}

/// Every message of the stream, decoded; None while the stream cannot be read (a restarting
/// server).
async fn stream_contents(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Option<Vec<(Cursor, StoredEvent)>> {
    let mut stream = js.get_stream(&settings.stream).await.ok()?;
    let state = stream.info().await.ok()?.state.clone();
    let mut contents = Vec::new();
    if state.messages == 0 {
        return Some(contents);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        match stream.get_raw_message(sequence).await {
            Ok(message) => {
                let (event, cursor) = wire::decode(Some(&message.headers), &message.payload)
                    .expect("every message is a relayed event");
                contents.push((cursor, event));
            }
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(_) => return None,
        }
    }
    Some(contents)
}

/// Whether the stream holds exactly the committed log: every event once, in commit order.
async fn stream_matches_log(
    js: &jetstream::Context,
    settings: &StreamSettings,
    log: &EventLog,
) -> bool {
    let Some(contents) = stream_contents(js, settings).await else {
        return false;
    };
    let expected: Vec<(Cursor, StoredEvent)> = committed(log)
        .await
        .into_iter()
        .map(|c| (c.commit.into(), c.event))
        .collect();
    contents == expected
}

async fn delete_stream(js: &jetstream::Context, settings: &StreamSettings) {
    let _ = js.delete_stream(&settings.stream).await;
}

/// Reads a feed until it has delivered `count` distinct events (acking each), or [`SOON`] is
/// over; returns them in delivery order.
async fn drain(feed: &mut impl EventFeed, count: usize) -> Vec<(Cursor, StoredEvent)> {
    let deadline = tokio::time::Instant::now() + SOON;
    let mut seen = HashSet::new();
    let mut delivered = Vec::new();
    while seen.len() < count && tokio::time::Instant::now() < deadline {
        let items: Vec<FeedItem> = match feed.next(64, Duration::from_millis(300)).await {
            Ok(items) => items,
            // A restarting server: the feed recreates what it needs on the next call.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        for item in items {
            seen.insert(item.cursor);
            delivered.push((item.cursor, item.event.clone()));
            item.ack().await.expect("ack");
        }
    }
    delivered
}

/// Publishes until `count` events have been stored, retrying through errors (a server that is
/// still coming back).
async fn publish(relay: &mut Relay, count: usize) {
    let deadline = tokio::time::Instant::now() + SOON;
    let mut published = 0;
    while published < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "published {published} of {count} within {SOON:?}"
        );
        match relay.publish_pending().await {
            Ok(n) => published += n,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(published, count, "published exactly the pending events");
}

// --- The commit-ordered read -------------------------------------------------------------

/// Reads the log with a cursor, two at a time, until `stop` is set and nothing is left.
async fn tail(log: EventLog, stop: tokio::sync::watch::Receiver<bool>) -> Vec<CommittedEvent> {
    let mut cursor = CommitPosition::START;
    let mut seen = Vec::new();
    loop {
        let stopping = *stop.borrow();
        let page = log.read_committed(cursor, 2).await.expect("tail the log");
        match page.last() {
            Some(last) => cursor = last.commit,
            None if stopping => return seen,
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
        seen.extend(page);
    }
}

#[tokio::test]
async fn a_late_commit_is_read_in_order_and_relayed_once() {
    bounded("late commit", async {
        let store = TestStore::new(StoreKind::Postgres).await;
        let Backend::Postgres(pool) = store.log.backend() else {
            panic!("a PostgreSQL store");
        };
        let commands = commands_on(&store.log);
        let settings = own_stream();
        let js = jetstream_of(&nats().url).await;
        let mut relay = Relay::connect(store.log.clone(), &nats().url, settings.clone())
            .await
            .expect("relay");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let tailing = tokio::spawn(tail(store.log.clone(), stopped));

        append(&commands, 3).await;
        // A writer that takes its position now and commits last.
        let mut late = pool.begin().await.expect("begin");
        let late_position: i64 = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
             event_version, payload, metadata) \
             VALUES ('Probe', $1, 1, 'Probed', '1', '{}', '{}') RETURNING global_position",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .fetch_one(&mut *late)
        .await
        .expect("insert the late event");
        append(&commands, 5).await;

        // The hazard is real: a reader following positions would already pass the late event.
        let naive: Vec<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events WHERE global_position > $1 \
             ORDER BY global_position",
        )
        .bind(late_position - 1)
        .fetch_all(pool)
        .await
        .expect("naive read");
        assert_eq!(
            naive.len(),
            5,
            "five later events are committed and visible"
        );
        assert!(naive.iter().all(|p| *p > late_position));

        // The commit-ordered read stops before the open transaction: the first three, never
        // more (other tests' transactions on the cluster may delay even those briefly).
        eventually("the first three visible", || async {
            committed(&store.log).await.len() == 3
        })
        .await;
        let deadline = tokio::time::Instant::now() + SOON;
        let mut relayed_while_open = 0;
        for round in 0.. {
            let visible = committed(&store.log).await;
            assert_eq!(visible.len(), 3, "nothing after an open transaction");
            assert!(visible
                .iter()
                .all(|c| c.event.global_position < late_position));
            relayed_while_open += relay.publish_pending().await.expect("relay");
            if relayed_while_open == 3 && round >= 5 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "relay the first three"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(relayed_while_open, 3);

        late.commit().await.expect("commit the late event");
        eventually("all nine visible", || async {
            committed(&store.log).await.len() == 9
        })
        .await;
        let all = committed(&store.log).await;
        assert_eq!(
            all[3].event.global_position, late_position,
            "the late event in its place, before the five"
        );
        for pair in all.windows(2) {
            assert!(
                pair[0].commit < pair[1].commit,
                "strictly increasing cursor"
            );
        }

        stop.send(true).expect("stop the tail");
        let tailed = tailing.await.expect("tail task");
        assert_eq!(
            tailed, all,
            "a tailing reader saw every event once, in order"
        );

        publish(&mut relay, 6).await;
        assert_eq!(relay.publish_pending().await.expect("relay"), 0);
        let contents = stream_contents(&js, &settings).await.expect("stream");
        assert_eq!(contents.len(), 9, "one message per event");
        assert!(stream_matches_log(&js, &settings, &store.log).await);

        let mut feed = JetStreamFeed::connect(&nats().url, settings.clone(), "late")
            .await
            .expect("JetStream feed");
        let delivered = drain(&mut feed, 9).await;
        let expected: Vec<(Cursor, StoredEvent)> = all
            .into_iter()
            .map(|c| (c.commit.into(), c.event))
            .collect();
        assert_eq!(
            delivered, expected,
            "the consumer sees every event once, in order"
        );
        assert!(feed
            .next(16, Duration::from_millis(200))
            .await
            .expect("feed")
            .is_empty());
        delete_stream(&js, &settings).await;
    })
    .await;
}

// --- The store feed -----------------------------------------------------------------------

async fn store_feed_delivers_every_event_once(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = commands_on(&store.log);
    append(&commands, 10).await;
    visible(&store.log, 10).await;

    let mut feed = StoreFeed::new(store.log.clone(), Cursor::START);
    let mut delivered: Vec<FeedItem> = Vec::new();
    loop {
        let items = feed
            .next(4, Duration::from_millis(50))
            .await
            .expect("store feed");
        assert!(items.len() <= 4);
        if items.is_empty() {
            break;
        }
        delivered.extend(items);
    }
    let all = committed(&store.log).await;
    assert_eq!(delivered.len(), 10);
    assert!(delivered
        .iter()
        .zip(&all)
        .all(|(item, c)| item.cursor == Cursor::from(c.commit) && item.event == c.event));
    assert_eq!(feed.cursor(), delivered[9].cursor);

    // From a cursor: what comes after it, only.
    let mut from_middle = StoreFeed::new(store.log.clone(), delivered[4].cursor);
    let rest = from_middle
        .next(100, Duration::from_millis(50))
        .await
        .expect("store feed");
    let rest: Vec<Cursor> = rest.iter().map(|item| item.cursor).collect();
    let expected: Vec<Cursor> = delivered[5..].iter().map(|item| item.cursor).collect();
    assert_eq!(rest, expected);

    // Waiting: an event committed while the feed waits arrives within the wait.
    let waiting = {
        let commands = commands.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            append(&commands, 1).await;
        })
    };
    let items = feed
        .next(10, Duration::from_secs(10))
        .await
        .expect("store feed");
    waiting.await.expect("writer");
    assert_eq!(items.len(), 1);

    // Concurrent writers: a tailing feed still gets every event once, in commit order.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let commands = commands.clone();
            tokio::spawn(async move { append(&commands, 10).await })
        })
        .collect();
    let mut tailed = Vec::new();
    while tailed.len() < 40 {
        let items = feed
            .next(7, Duration::from_secs(10))
            .await
            .expect("store feed");
        assert!(!items.is_empty(), "the writers' events arrive");
        tailed.extend(items.into_iter().map(|item| item.cursor));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let all: Vec<Cursor> = committed(&store.log)
        .await
        .into_iter()
        .map(|c| c.commit.into())
        .collect();
    assert_eq!(all.len(), 51);
    assert_eq!(tailed, all[11..], "every event once, in commit order");
    assert!(feed
        .next(10, Duration::from_millis(100))
        .await
        .expect("store feed")
        .is_empty());
}

#[tokio::test]
async fn store_feed_delivers_every_event_once_embedded() {
    bounded(
        "store feed (embedded)",
        store_feed_delivers_every_event_once(StoreKind::Embedded),
    )
    .await;
}

#[tokio::test]
async fn store_feed_delivers_every_event_once_postgres() {
    bounded(
        "store feed (PostgreSQL)",
        store_feed_delivers_every_event_once(StoreKind::Postgres),
    )
    .await;
}

// --- The relay through restarts and lost stores -------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copy {}", from.display());
}

fn remove_dir(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).expect("remove a directory");
    }
}

async fn relay_survives_restarts_and_lost_stores(kind: StoreKind) {
    let store = TestStore::new(kind).await;
    let commands = commands_on(&store.log);
    let mut server = NatsServer::start().expect("nats-server");
    let settings = StreamSettings::default();
    let js = jetstream_of(&server.url).await;
    let snapshot = tempfile::tempdir().expect("snapshot directory");
    let saved = snapshot.path().join("jetstream");

    // A relay publishes; a new one resumes after the stream's last message.
    append(&commands, 5).await;
    {
        let mut first = Relay::connect(store.log.clone(), &server.url, settings.clone())
            .await
            .expect("relay");
        publish(&mut first, 5).await;
    }
    append(&commands, 3).await;
    let mut relay = Relay::connect(store.log.clone(), &server.url, settings.clone())
        .await
        .expect("relay");
    publish(&mut relay, 3).await;
    assert_eq!(relay.publish_pending().await.expect("relay"), 0);
    assert!(stream_matches_log(&js, &settings, &store.log).await);
    let mut feed = JetStreamFeed::connect(&server.url, settings.clone(), "projector")
        .await
        .expect("JetStream feed");
    assert_eq!(drain(&mut feed, 8).await.len(), 8);

    // A crash, then two more events acknowledged by the stream...
    server.kill();
    copy_dir(&server.store_dir, &saved);
    server.restart().expect("restart nats-server");
    append(&commands, 2).await;
    publish(&mut relay, 2).await;
    assert!(stream_matches_log(&js, &settings, &store.log).await);

    // ...which the next crash loses (as if they never reached the disk). The idle relay
    // notices and republishes them.
    server.kill();
    remove_dir(&server.store_dir);
    copy_dir(&saved, &server.store_dir);
    server.restart().expect("restart nats-server");
    let deadline = tokio::time::Instant::now() + SOON;
    let restored = loop {
        if let Some(contents) = stream_contents(&js, &settings).await {
            break contents.len();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restored stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(restored, 8, "the last two acknowledged messages are lost");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(
        relay
            .with_config(RelayConfig {
                check_interval: Duration::from_millis(300),
                ..RelayConfig::default()
            })
            .run(async {
                let _ = stopped.await;
            }),
    );
    eventually("the lost tail republished", || {
        stream_matches_log(&js, &settings, &store.log)
    })
    .await;

    // The whole store lost: everything republished, and the feed recreates its consumer.
    server.kill();
    remove_dir(&server.store_dir);
    server.restart().expect("restart nats-server");
    eventually("everything republished", || {
        stream_matches_log(&js, &settings, &store.log)
    })
    .await;
    append(&commands, 2).await;
    eventually("new events relayed", || {
        stream_matches_log(&js, &settings, &store.log)
    })
    .await;
    let redelivered = drain(&mut feed, 12).await;
    let seen: HashSet<Cursor> = redelivered.iter().map(|(cursor, _)| *cursor).collect();
    let all: HashSet<Cursor> = committed(&store.log)
        .await
        .into_iter()
        .map(|c| c.commit.into())
        .collect();
    assert_eq!(all.len(), 12);
    assert_eq!(seen, all, "the recreated consumer delivers every event");

    let _ = shutdown.send(());
    tokio::time::timeout(SOON, running)
        .await
        .expect("the relay stops")
        .expect("relay task");
    server.kill();
}

#[tokio::test]
async fn relay_survives_restarts_and_lost_stores_postgres() {
    bounded(
        "relay restarts (PostgreSQL)",
        relay_survives_restarts_and_lost_stores(StoreKind::Postgres),
    )
    .await;
}

#[tokio::test]
async fn relay_survives_restarts_and_lost_stores_embedded() {
    bounded(
        "relay restarts (embedded)",
        relay_survives_restarts_and_lost_stores(StoreKind::Embedded),
    )
    .await;
}

// --- One publisher at a time ----------------------------------------------------------------

#[tokio::test]
async fn only_one_relay_publishes() {
    bounded("two relays", async {
        let store = TestStore::new(StoreKind::Postgres).await;
        let commands = commands_on(&store.log);
        let settings = own_stream();
        let js = jetstream_of(&nats().url).await;
        let connect = || Relay::connect(store.log.clone(), &nats().url, settings.clone());

        append(&commands, 5).await;
        let mut a = connect().await.expect("relay a");
        let mut b = connect().await.expect("relay b");
        publish(&mut a, 5).await;
        assert!(a.is_publisher());
        assert_eq!(b.publish_pending().await.expect("relay b"), 0);
        assert!(!b.is_publisher(), "the lock is taken");
        append(&commands, 3).await;
        assert_eq!(b.publish_pending().await.expect("relay b"), 0);
        publish(&mut a, 3).await;

        // The publisher goes away: its session ends, and the other takes over where the
        // stream stops.
        drop(a);
        append(&commands, 2).await;
        publish(&mut b, 2).await;
        assert!(b.is_publisher());
        assert!(stream_matches_log(&js, &settings, &store.log).await);

        // Both running against steady writers: each event exactly once, in commit order.
        let a = connect().await.expect("relay a");
        let (shutdown, stopped) = tokio::sync::watch::channel(false);
        let relays: Vec<_> = [a, b]
            .into_iter()
            .map(|relay| {
                let mut stopped = stopped.clone();
                tokio::spawn(relay.run(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                }))
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let commands = commands.clone();
                tokio::spawn(async move { append(&commands, 10).await })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        // All 50: the log a reader can see lags behind while another test's transaction holds
        // the cluster's xmin back, so "matches the log" alone could be true at 10.
        eventually("all relayed", || async {
            stream_contents(&js, &settings).await.map(|c| c.len()) == Some(50)
                && stream_matches_log(&js, &settings, &store.log).await
        })
        .await;
        assert_eq!(
            stream_contents(&js, &settings).await.map(|c| c.len()),
            Some(50)
        );
        shutdown.send(true).expect("stop the relays");
        for relay in relays {
            tokio::time::timeout(SOON, relay)
                .await
                .expect("a relay stops")
                .expect("relay task");
        }
        delete_stream(&js, &settings).await;
    })
    .await;
}

/// Transaction ids are ordered as numbers, not as text: a reader whose pages span 9…9 → 10…0
/// must neither reorder nor skip (a text sort puts 1000 before 999).
#[tokio::test]
async fn commit_order_holds_across_a_change_in_the_number_of_digits_of_tx_id() {
    let store = TestStore::new(StoreKind::Postgres).await;
    let commands = custody_commands::Commands::new(
        store.log.clone(),
        std::sync::Arc::new(custody_commands::ManualClock::at(
            custody_tests::samples::time("2026-11-23T12:00:00+08:00"),
        )),
    );
    let custody_eventlog::Backend::Postgres(pool) = store.log.backend() else {
        panic!("a PostgreSQL store");
    };
    sqlx::query(
        "CREATE PROCEDURE burn_xids(n bigint) LANGUAGE plpgsql AS $$ \
         BEGIN FOR i IN 1..n LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$",
    )
    .execute(pool)
    .await
    .expect("create procedure");
    let current: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(pool)
        .await
        .expect("xid");
    let current: u64 = current.parse().expect("numeric xid");
    let boundary = 10u64.pow(current.to_string().len() as u32);
    // Leave a few transactions before the boundary for our own appends.
    let burn = boundary.saturating_sub(current).saturating_sub(4);
    sqlx::query("CALL burn_xids($1)")
        .bind(burn as i64)
        .execute(pool)
        .await
        .expect("burn transaction ids");
    let mut appended = 0;
    for _ in 0..10 {
        let number = custody_tests::samples::fresh_document_number();
        commands
            .document(
                custody_tests::samples::document_id(&number).as_str(),
                custody_tests::samples::deposit(&number),
                custody_tests::samples::unkeyed(),
            )
            .await
            .expect("deposit");
        appended += 1;
    }
    // Page through with a small page so that a page boundary falls across the digit change.
    let mut cursor = CommitPosition::START;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < appended {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {appended}",
            seen.len()
        );
        let page = store.log.read_committed(cursor, 3).await.expect("read");
        if page.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for committed in page {
            assert!(committed.commit > cursor, "commit order moves forward");
            cursor = committed.commit;
            seen.push(committed.event.global_position);
        }
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(seen, sorted, "every event once, in order");
    assert!(
        cursor.tx_id >= boundary,
        "the appends crossed {boundary} (last tx {})",
        cursor.tx_id
    );
}
