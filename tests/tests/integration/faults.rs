//! Faults of the transport: PostgreSQL is the only source of truth, JetStream may lose,
//! duplicate or redeliver. After every fault the views equal a fresh replay of the store, row by
//! row, and nothing is doubled.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use custody_api::Transport;
use custody_commands::{Commands, ManualClock};
use custody_domain::document::Document;
use custody_domain::transitions::Named;
use custody_projections::feed::{EventFeed, JetStreamFeed, StreamSettings};
use custody_projections::relay::Relay;
use custody_projections::{Projection, Projector};
use custody_simulator::generate::random_document_record;
use custody_simulator::{DepositKind, Trip};
use custody_tests::samples::{self, date};
use custody_tests::{
    AppOptions, NatsCluster, NatsServer, OwnPostgres, StoreKind, TestApp, TestStore,
};
use sqlx::Row;

/// The app's options with events reaching the projectors through JetStream at `url`.
fn over_jetstream(url: &str, settings: StreamSettings) -> AppOptions {
    AppOptions {
        transport: Transport::JetStream {
            url: url.to_string(),
            settings,
        },
        ..AppOptions::default()
    }
}

fn stream() -> StreamSettings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    StreamSettings::new(format!("FAULTS_{id}"), format!("faults.{id}"))
}

/// Every document view row equals its aggregate replayed from the store, and the access-record
/// view holds exactly one row per movement.
async fn assert_views_equal_replay(app: &TestApp) {
    assert_views_equal_replay_of(&app.store.log, &app.state.commands).await
}

/// As [`assert_views_equal_replay`], over a log and a command service of the test's own (the
/// service may run in other processes).
pub(crate) async fn assert_views_equal_replay_of(
    log: &custody_eventlog::EventLog,
    commands: &Commands,
) {
    let pool = log.platform().pool();
    let generation = |name: &'static str| async move {
        custody_projections::status(pool, Projection::parse(name).expect("projection"))
            .await
            .expect("status")
            .active_generation
    };
    let documents = log.aggregate_ids("Document").await.expect("document ids");
    let rows =
        sqlx::query("SELECT zjbs, state, version, sbxlh FROM view_documents WHERE generation = $1")
            .bind(generation("documents").await)
            .fetch_all(pool)
            .await
            .expect("view rows");
    assert_eq!(rows.len(), documents.len(), "one view row per document");
    let mut movements = 0usize;
    for row in rows {
        let zjbs: String = row.try_get("zjbs").expect("zjbs");
        let replayed: Document = commands.load(&zjbs).await.expect("replay");
        let events = log.events_of("Document", &zjbs).await.expect("events");
        assert_eq!(
            row.try_get::<String, _>("state").expect("state"),
            replayed.state.name(),
            "{zjbs}"
        );
        assert_eq!(
            row.try_get::<i64, _>("version").expect("version"),
            events.len() as i64,
            "{zjbs}"
        );
        assert_eq!(
            row.try_get::<Option<String>, _>("sbxlh").expect("sbxlh"),
            replayed.location.map(|l| l.device.to_string()),
            "{zjbs}"
        );
        movements += events
            .iter()
            .filter(|e| {
                matches!(
                    e.event_type.as_str(),
                    "Deposited" | "Withdrawn" | "AbnormalWithdrawal"
                )
            })
            .count();
    }
    let access: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM view_access_records WHERE generation = $1")
            .bind(generation("access_records").await)
            .fetch_one(pool)
            .await
            .expect("count")
            .try_get("n")
            .expect("n");
    assert_eq!(
        access, movements as i64,
        "access records are neither doubled nor missing"
    );
}

#[tokio::test]
async fn views_survive_nats_crashes_and_a_lost_store_under_load() {
    let mut nats = NatsServer::start().expect("nats-server");
    let app = Arc::new(
        TestApp::spawn_with(StoreKind::Postgres, over_jetstream(&nats.url, stream())).await,
    );
    let cabinet = Arc::new(app.active_cabinet().await);
    let running = Arc::new(AtomicBool::new(true));
    // Deposits accepted so far: each fault waits for more of them, so the load goes on through
    // every fault however fast this machine is.
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (app, cabinet, running) = (app.clone(), cabinet.clone(), running.clone());
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            while running.load(Ordering::Relaxed) && sent < 400 {
                let record = random_document_record(&mut rand::rng());
                let drawer = cabinet.drawer(sent);
                let deposit = cabinet
                    .deposit(&record, &drawer, DepositKind::New, app.now_ms())
                    .expect("deposit");
                // The write path does not depend on NATS: every report is accepted.
                let (status, body) = app.send(&deposit).await;
                assert_eq!(status, 200, "{body}");
                if sent.is_multiple_of(3) {
                    let lend = cabinet
                        .lend(
                            &record,
                            &drawer,
                            date(2099, 12, 24),
                            &Trip::default(),
                            app.now_ms(),
                        )
                        .expect("lend");
                    assert_eq!(app.send(&lend).await.0, 200);
                }
                sent += 1;
                progress.store(sent, Ordering::Relaxed);
            }
            sent
        })
    };
    let more = |step: usize| {
        let progress = progress.clone();
        async move {
            let waited = tokio::time::timeout(Duration::from_secs(120), async {
                while progress.load(Ordering::Relaxed) < step * 8 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            waited.expect("the writer goes on while NATS is down");
        }
    };
    more(1).await;
    nats.kill();
    more(2).await;
    nats.restart().expect("restart nats-server");
    more(3).await;
    nats.kill();
    std::fs::remove_dir_all(&nats.store_dir).expect("delete the JetStream store");
    nats.restart()
        .expect("restart nats-server without its store");
    more(4).await;
    running.store(false, Ordering::Relaxed);
    let sent = writer.await.expect("writer");
    assert!(
        sent >= 32,
        "the load went on through the faults ({sent} deposits)"
    );
    tokio::time::timeout(Duration::from_secs(120), app.caught_up())
        .await
        .expect("projections caught up after the faults");
    assert_views_equal_replay(&app).await;
}

#[tokio::test]
async fn a_projector_killed_between_commit_and_ack_applies_nothing_twice() {
    let nats = NatsServer::start().expect("nats-server");
    let store = TestStore::new(StoreKind::Postgres).await;
    let commands = Commands::new(
        store.log.clone(),
        Arc::new(ManualClock::at(samples::time("2026-11-23T12:00:00+08:00"))),
    );
    let numbers: Vec<_> = (0..30).map(|_| samples::fresh_document_number()).collect();
    for number in &numbers {
        commands
            .document(
                samples::document_id(number).as_str(),
                samples::deposit(number),
                samples::unkeyed(),
            )
            .await
            .expect("deposit");
    }
    let settings = stream();
    let mut relay = Relay::connect(store.log.clone(), &nats.url, settings.clone())
        .await
        .expect("relay");
    let mut published = 0;
    for _ in 0..100 {
        published += relay.publish_pending().await.expect("publish");
        if published >= numbers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(published, numbers.len());

    let projector = Projector::new(store.log.clone(), Projection::Documents)
        .await
        .expect("projector");
    // First life: commits a batch, then dies before acking it.
    let mut feed = JetStreamFeed::connect(&nats.url, settings.clone(), "crashy")
        .await
        .expect("feed")
        .with_ack_wait(Duration::from_secs(1));
    let items = feed
        .next(10, Duration::from_secs(5))
        .await
        .expect("a batch");
    assert!(!items.is_empty());
    let first = projector.commit(&items).await.expect("commit");
    assert_eq!(first, items.len());
    drop(items);
    drop(feed);
    // Second life: the unacked batch is redelivered with the rest; the view skips what it has.
    let feed = JetStreamFeed::connect(&nats.url, settings, "crashy")
        .await
        .expect("feed")
        .with_ack_wait(Duration::from_secs(1));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = projector.clone();
    let running = tokio::spawn(async move { runner.run(feed, stopped).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = projector.status().await.expect("status");
        if status.applied >= numbers.len() as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projector stalled at {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give redeliveries time to arrive, then stop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop.send(true);
    let _ = running.await;
    let status = projector.status().await.expect("status");
    assert_eq!(
        status.applied,
        numbers.len() as i64,
        "each event applied exactly once"
    );
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM view_documents WHERE generation = $1")
        .bind(status.active_generation)
        .fetch_one(store.log.platform().pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(rows, numbers.len() as i64);
}

/// Ingress needs only the store: a service started while NATS is down starts, takes reports
/// and says it is not ready; when NATS comes, the relay and the feeds connect on their own and
/// the views catch up, with nothing restarted.
#[tokio::test]
async fn the_service_starts_and_takes_reports_while_nats_is_down() {
    let mut nats = NatsServer::start().expect("nats-server");
    nats.kill();
    let app = TestApp::spawn_with(StoreKind::Postgres, over_jetstream(&nats.url, stream())).await;
    let cabinet = app.active_cabinet().await;
    for i in 0..5 {
        let record = random_document_record(&mut rand::rng());
        let deposit = cabinet
            .deposit(&record, &cabinet.drawer(i), DepositKind::New, app.now_ms())
            .expect("deposit");
        let (status, body) = app.send(&deposit).await;
        assert_eq!(status, 200, "accepted with NATS down: {body}");
    }
    let ready = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 503);
    let body: serde_json::Value = ready.json().await.expect("ready body");
    assert_eq!(body["checks"]["nats"], "disconnected", "{body}");

    nats.restart().expect("nats-server comes");
    tokio::time::timeout(Duration::from_secs(60), app.caught_up())
        .await
        .expect("the projections catch up once NATS is there");
    assert_views_equal_replay(&app).await;
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ready = app
                .client
                .get(app.url("/ready"))
                .send()
                .await
                .expect("ready");
            if ready.status().as_u16() == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(ready.is_ok(), "ready once NATS is connected");
}

/// A service started while its PostgreSQL is down waits for it, with no outside restart loop,
/// and serves once it comes.
#[tokio::test]
async fn serve_waits_for_postgresql_at_start() {
    let mut postgres = OwnPostgres::start().expect("a PostgreSQL of this test's own");
    let store = TestStore::postgres_on(&postgres.server).await;
    postgres.stop();
    let starting = tokio::spawn(TestApp::serve(store, AppOptions::default()));
    // Longer than a failed connect takes: it did not give up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !starting.is_finished(),
        "serve gave up while PostgreSQL was down"
    );
    postgres.restart().expect("PostgreSQL starts");
    let app = tokio::time::timeout(Duration::from_secs(60), starting)
        .await
        .expect("serve starts once PostgreSQL is there")
        .expect("the start task");
    let cabinet = app.active_cabinet().await;
    let record = random_document_record(&mut rand::rng());
    let deposit = cabinet
        .deposit(&record, &cabinet.drawer(0), DepositKind::New, app.now_ms())
        .expect("deposit");
    assert_eq!(app.send(&deposit).await.0, 200);
    app.stop().await;
}

/// A hung PostgreSQL (SIGSTOP: it answers nothing, not even an error) costs a report and a read
/// at most the store budget: they are refused with `E_UNAVAILABLE` (503, `Retry-After`) rather
/// than hanging, `/health` still answers at once, and once the server runs again reports are
/// taken and nothing is doubled.
#[tokio::test]
async fn a_hung_postgresql_gets_fast_refusals_not_hangs() {
    let postgres = OwnPostgres::start().expect("a PostgreSQL of this test's own");
    let app = TestApp::serve(
        TestStore::postgres_on(&postgres.server).await,
        AppOptions::default(),
    )
    .await;
    let unit = app.unit().await;
    let cabinet = app.active_cabinet_of(&unit).await;
    let reader = app.token("reader", &unit, &[]).await;
    // The postmaster and every backend process: a stopped postmaster alone still lets open
    // sessions answer. The postmaster first: stopped, it forks no backend, so its children
    // listed afterwards are all of them (listed before, a connection opening meanwhile would
    // get a backend that runs on).
    let signal = |name: &str| {
        let pid = postgres.server.pid;
        let kill = |pids: Vec<String>| {
            let status = std::process::Command::new("kill")
                .arg(name)
                .args(&pids)
                .status()
                .expect("kill");
            assert!(status.success(), "kill {name}");
        };
        kill(vec![pid.to_string()]);
        let children: Vec<String> = children_of(pid).iter().map(u32::to_string).collect();
        if !children.is_empty() {
            kill(children);
        }
    };
    // A client that waits far longer than the budget: a hang would show as its timeout.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let hung_record = random_document_record(&mut rand::rng());
    signal("-STOP");
    let deposit = cabinet
        .deposit(
            &hung_record,
            &cabinet.drawer(0),
            DepositKind::New,
            app.now_ms(),
        )
        .expect("deposit");
    let post = |request: &custody_protocol::SignedRequest| {
        client
            .post(app.url(&format!("/yth_g1xt/api/v1/{}", request.mstype)))
            .header("content-type", "application/json")
            .body(request.to_json().expect("json"))
            .send()
    };
    let response = post(&deposit).await;
    // A refusal that needs no store is answered, and kept once the store is back (spooled).
    let stale = cabinet
        .deposit(
            &random_document_record(&mut rand::rng()),
            &cabinet.drawer(2),
            DepositKind::New,
            app.now_ms() - 3_600_000,
        )
        .expect("stale deposit");
    let refused = post(&stale).await;
    let health = client.get(app.url("/health")).send().await;
    let read = client
        .get(app.url("/api/v1/documents"))
        .bearer_auth(&reader)
        .send()
        .await;
    signal("-CONT");
    let response = response.expect("an answer, not a hang");
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.expect("body");
    assert_eq!(body["error_code"], "E_UNAVAILABLE", "{body}");
    assert_eq!(health.expect("health answers").status().as_u16(), 200);
    let refused = refused.expect("an answer, not a hang");
    assert_eq!(refused.status().as_u16(), 409);
    let read = read.expect("an answer, not a hang");
    assert_eq!(read.status().as_u16(), 503);
    let body: serde_json::Value = read.json().await.expect("body");
    assert_eq!(body["error_code"], "E_UNAVAILABLE", "{body}");

    // Running again: reports are taken, and the refused one is there at most once.
    let record = random_document_record(&mut rand::rng());
    let deposit = cabinet
        .deposit(&record, &cabinet.drawer(1), DepositKind::New, app.now_ms())
        .expect("deposit");
    let accepted = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if app.send(&deposit).await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(accepted.is_ok(), "reports are taken once PostgreSQL runs");
    let kept = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let (_, body) = app
                .ops(reqwest::Method::GET, "/api/v1/ops/rejections", None)
                .await;
            let stale: Vec<_> = body["rejections"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| r["error_code"] == "E_STALE")
                .collect();
            if !stale.is_empty() {
                return stale.len();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert_eq!(
        kept,
        Ok(1),
        "the refusal made while the store hung is kept once"
    );
    // Two deposits were sent, one of them refused mid-way: one or two documents, each
    // deposited once.
    let documents = app
        .store
        .log
        .aggregate_ids("Document")
        .await
        .expect("documents");
    assert!((1..=2).contains(&documents.len()), "{documents:?}");
    for id in documents {
        let events = app
            .store
            .log
            .events_of("Document", &id)
            .await
            .expect("events");
        assert_eq!(events.len(), 1, "{id}: nothing doubled");
    }
    app.stop().await;
}

/// The processes whose parent is `pid` (from /proc: no procps needed).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

/// A three-node JetStream cluster with the stream at R3: one node killed while reports arrive (and
/// later brought back) loses nothing: every report is accepted, the stream holds every event once,
/// and the views equal a replay.
#[tokio::test]
async fn a_three_node_cluster_loses_one_node_and_nothing_else() {
    let mut cluster = NatsCluster::start(3).expect("a three-node nats cluster");
    let settings = StreamSettings {
        replicas: 3,
        ..stream()
    };
    let app = TestApp::spawn_with(
        StoreKind::Postgres,
        over_jetstream(&cluster.url(), settings.clone()),
    )
    .await;
    let cabinet = app.active_cabinet().await;
    let deposit = |i: usize| {
        let record = random_document_record(&mut rand::rng());
        cabinet
            .deposit(&record, &cabinet.drawer(i), DepositKind::New, app.now_ms())
            .expect("deposit")
    };
    for i in 0..20 {
        assert_eq!(app.send(&deposit(i)).await.0, 200);
    }
    tokio::time::timeout(Duration::from_secs(120), app.caught_up())
        .await
        .expect("caught up over the cluster");
    cluster.nodes[0].kill();
    for i in 20..40 {
        assert_eq!(
            app.send(&deposit(i)).await.0,
            200,
            "accepted with a node down"
        );
    }
    tokio::time::timeout(Duration::from_secs(120), app.caught_up())
        .await
        .expect("caught up with one node down");
    cluster.nodes[0].restart().expect("the node comes back");
    for i in 40..50 {
        assert_eq!(app.send(&deposit(i)).await.0, 200);
    }
    tokio::time::timeout(Duration::from_secs(120), app.caught_up())
        .await
        .expect("caught up after the node came back");
    assert_views_equal_replay(&app).await;

    // The stream is replicated three times and holds each event once.
    let client = async_nats::connect(cluster.nodes[1].url.as_str())
        .await
        .expect("connect");
    let mut info = async_nats::jetstream::new(client)
        .get_stream(&settings.stream)
        .await
        .expect("the stream");
    let info = info.info().await.expect("stream info");
    assert_eq!(info.config.num_replicas, 3);
    let stored = app.store.log.count().await.expect("events");
    assert_eq!(
        info.state.messages, stored as u64,
        "each event once in the stream"
    );
}
