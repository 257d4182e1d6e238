//! Several `custody serve` processes on one PostgreSQL (docs/scaling.md): every background
//! worker runs in exactly one of them, the outbox delivers each notification once, and when the
//! holder is killed (kill -9) or paused (SIGSTOP) the other takes over within seconds; a paused
//! holder that wakes writes nothing with its old lease.
//!
//! The instances are the real binary, `target/debug/custody` (built by `cargo build -p
//! custody-api`, which `cargo test --workspace` and scripts/test do), each with its own data
//! directory and the same platform and checkpoint keys, as operators run them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use custody_commands::{Clock, Commands, SystemClock};
use custody_eventlog::EventLog;
use custody_protocol::SignedRequest;
use custody_simulator::generate::random_document_record;
use custody_simulator::{CabinetSpec, DepositKind, SimulatedCabinet};
use custody_tests::{fixtures_dir, postgres, OPS_TOKEN};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::faults::assert_views_equal_replay_of;
use crate::process_recovery::serve_on_loopback;

/// The worker leases every instance registers (no relay: these instances feed from the store).
pub(crate) const WORKERS: [&str; 4] = ["checkpointer", "maintenance", "processes", "projectors"];

/// Generous: what is asserted is that it happens, not how fast.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

fn custody_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable");
    // target/debug/deps/integration-… → target/debug/custody
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("custody"))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p custody-api)",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The master key file all of this binary's instances share.
pub(crate) fn shared_master_key() -> PathBuf {
    static DIR: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("master key directory");
        custody_vault::MasterKeyFile::load_or_generate(&dir.path().join("master.key"))
            .expect("the shared master key");
        dir
    });
    dir.path().join("master.key")
}

/// One `custody serve` process.
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) base: String,
    child: Child,
    dir: TempDir,
}

impl Instance {
    pub(crate) fn start(
        id: &str,
        database_url: &str,
        webhook: &str,
        checkpoint_key: Option<&Path>,
    ) -> Self {
        Self::start_with(id, database_url, webhook, checkpoint_key, &[])
    }

    /// As [`Instance::start`], with more options (`--nats-url …`).
    pub(crate) fn start_with(
        id: &str,
        database_url: &str,
        webhook: &str,
        checkpoint_key: Option<&Path>,
        extra: &[String],
    ) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("custody-instance-")
            .tempdir()
            .expect("data directory");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("serve.log")).expect("log file");
        let mut command = Command::new(custody_binary());
        command
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--database-url", database_url])
            .args(["--max-connections", "10"])
            .args(["--instance-id", id])
            .arg("--platform-key")
            .arg(fixtures_dir().join("platform-enc.key.pem"))
            // Every instance seals under the one master key (docs/personal-data.md).
            .arg("--master-key")
            .arg(shared_master_key())
            .args(["--reminder-webhook-url", webhook])
            .args(["--sender-rate", "100000", "--global-rate", "100000"])
            .env("CUSTODY_OPS_TOKEN", OPS_TOKEN)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        if let Some(key) = checkpoint_key {
            command.arg("--checkpoint-key").arg(key);
        }
        command.args(extra);
        let child = command.spawn().expect("spawn custody serve");
        Instance {
            id: id.to_string(),
            base: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        }
    }

    pub(crate) fn checkpoint_key(&self) -> PathBuf {
        self.dir.path().join("data").join("checkpoint-sign.key.pem")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    pub(crate) async fn healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let answer = client.get(format!("{}/health", self.base)).send().await;
            if answer.is_ok_and(|a| a.status() == 200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance {} did not start:\n{}",
                self.id,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -s {signal}");
    }

    pub(crate) fn kill(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn ops(client: &reqwest::Client, base: &str, path: &str) -> Value {
    let answer = client
        .get(format!("{base}{path}"))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .expect("ops call");
    assert_eq!(answer.status(), 200, "{path}");
    answer.json().await.expect("JSON")
}

/// `GET /api/v1/ops/workers` of each instance, once they all give the same workers, each held
/// by `holder` (any holder when None); the holder of each worker.
pub(crate) async fn workers_settled(
    client: &reqwest::Client,
    bases: &[&str],
    holder: Option<&str>,
) -> BTreeMap<String, String> {
    workers_settled_as(client, bases, holder, &WORKERS).await
}

/// As [`workers_settled`], for instances that register the lease `names` (sorted).
pub(crate) async fn workers_settled_as(
    client: &reqwest::Client,
    bases: &[&str],
    holder: Option<&str>,
    expected: &[&str],
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut answers = Vec::new();
        for base in bases {
            answers.push(ops(client, base, "/api/v1/ops/workers").await["workers"].clone());
        }
        let first = &answers[0];
        let holders: BTreeMap<String, String> = first
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|w| {
                        Some((
                            w["name"].as_str()?.to_string(),
                            w["instance"].as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let names: Vec<&str> = first
            .as_array()
            .map(|all| all.iter().filter_map(|w| w["name"].as_str()).collect())
            .unwrap_or_default();
        let settled = answers.iter().all(|a| a == first)
            && names == expected
            && holders.len() == expected.len()
            && holder.is_none_or(|h| holders.values().all(|v| v == h));
        if settled {
            return holders;
        }
        assert!(
            Instant::now() < deadline,
            "the workers did not settle on {holder:?}: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A webhook receiver that counts each notification id it is sent.
#[derive(Clone, Default)]
pub(crate) struct Webhook {
    received: Arc<Mutex<BTreeMap<String, usize>>>,
}

async fn receive(State(hook): State<Webhook>, headers: HeaderMap) -> StatusCode {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    *hook
        .received
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default() += 1;
    StatusCode::OK
}

impl Webhook {
    pub(crate) async fn start() -> (Webhook, String) {
        let hook = Webhook::default();
        let (address, _) = serve_on_loopback(
            Router::new()
                .route("/reminders", post(receive))
                .with_state(hook.clone()),
        )
        .await;
        (hook, format!("http://{address}/reminders"))
    }

    pub(crate) fn counts(&self) -> BTreeMap<String, usize> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Queues `n` notifications due now, straight into the outbox (as the reminder process does).
pub(crate) async fn queue_notifications(log: &EventLog, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        sqlx::query(
            "INSERT INTO notification_outbox (id, reminder, unit, payload, queued_ms, attempts, \
             next_attempt_ms) VALUES ($1, $2, NULL, $3, $4, 0, 0)",
        )
        .bind(&id)
        .bind(format!("reminder-{id}"))
        .bind(json!({"test": id}).to_string())
        .bind(i as i64)
        .execute(log.platform().pool())
        .await
        .expect("queue a notification");
        ids.push(id);
    }
    ids
}

pub(crate) async fn all_delivered(log: &EventLog, ids: &[String]) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut pending = 0;
        for id in ids {
            let delivered: Option<i64> =
                sqlx::query_scalar("SELECT delivered_ms FROM notification_outbox WHERE id = $1")
                    .bind(id)
                    .fetch_one(log.platform().pool())
                    .await
                    .expect("outbox row");
            pending += usize::from(delivered.is_none());
        }
        if pending == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "{pending} notifications wait");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each of `ids` reached the webhook exactly once.
pub(crate) fn each_once(hook: &Webhook, ids: &[String]) {
    let counts = hook.counts();
    for id in ids {
        assert_eq!(counts.get(id), Some(&1), "notification {id}: {counts:?}");
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemClock.now().timestamp_millis()
}

/// A cabinet of a new unit, enrolled and activated through `base`.
pub(crate) async fn active_cabinet(client: &reqwest::Client, base: &str) -> SimulatedCabinet {
    let unit = custody_simulator::generate::random_credit_code(&mut rand::rng());
    let call = |path: &str, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(OPS_TOKEN)
            .json(&body)
            .send()
    };
    let made = call(
        "/api/v1/ops/orgs",
        json!({"code": unit, "name": "测试单位", "parent": null}),
    )
    .await
    .expect("create the unit");
    assert_eq!(made.status(), 201);
    let certificate = std::fs::read_to_string(fixtures_dir().join("platform-enc.cert.pem"))
        .expect("platform certificate");
    let spec = CabinetSpec::random(&mut rand::rng(), &unit, "测试单位");
    let cabinet = SimulatedCabinet::new(spec, &certificate).expect("cabinet");
    let enrolled = call(
        "/api/v1/ops/devices",
        serde_json::to_value(cabinet.enrollment()).expect("enrollment"),
    )
    .await
    .expect("enroll");
    assert_eq!(enrolled.status(), 201);
    let activation = cabinet.activation(now_ms()).expect("activation");
    let (status, body) = custody_simulator::post(client, base, &activation)
        .await
        .expect("activate");
    assert_eq!(status, 200, "{body}");
    cabinet
}

/// The instances a report may be sent to; an instance restarted elsewhere replaces its URL.
pub(crate) type Bases = Arc<Mutex<Vec<String>>>;

/// Sends `request` to `bases[first]`, and while no instance acknowledges it (no answer, 5xx,
/// 429), signs it again (a new reqid, the same business serial) and tries the next, as a
/// cabinet behind a failing-over client does. The index of the instance that acknowledged it.
async fn send_until_acknowledged(
    client: &reqwest::Client,
    cabinet: &SimulatedCabinet,
    bases: &[String],
    first: usize,
    request: &SignedRequest,
) -> usize {
    let shared: Bases = Arc::new(Mutex::new(bases.to_vec()));
    let took = send_until_taken(client, cabinet, &shared, first, request).await;
    bases.iter().position(|b| *b == took).expect("one of ours")
}

/// As [`send_until_acknowledged`], over instances that may move while it retries: the URL of
/// the instance that acknowledged it.
pub(crate) async fn send_until_taken(
    client: &reqwest::Client,
    cabinet: &SimulatedCabinet,
    bases: &Bases,
    first: usize,
    request: &SignedRequest,
) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut attempt = request.clone();
    for round in 0.. {
        let now = bases.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let base = &now[(first + round) % now.len()];
        match custody_simulator::post(client, base, &attempt).await {
            Ok((200, body)) if body["status"] == true => return base.clone(),
            // Not taken: the next instance is tried.
            Ok((status, _)) if status >= 500 || status == 429 => {}
            Ok((status, body)) => panic!("report refused: {status} {body}"),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "no instance acknowledged the report"
        );
        if (first + round + 1).is_multiple_of(now.len()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        attempt = cabinet
            .sign_again(request, now_ms(), None)
            .expect("sign again");
    }
    unreachable!()
}

/// Deposits of new documents, spread over the instances, until stopped; each one sent until
/// acknowledged. The number acknowledged.
fn spawn_load(
    client: reqwest::Client,
    cabinet: Arc<SimulatedCabinet>,
    bases: Vec<String>,
    running: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut sent = 0usize;
        while running.load(Ordering::Relaxed) {
            let record = random_document_record(&mut rand::rng());
            let drawer = cabinet.drawer(sent);
            let deposit = cabinet
                .deposit(&record, &drawer, DepositKind::New, now_ms())
                .expect("deposit");
            send_until_acknowledged(&client, &cabinet, &bases, sent % bases.len(), &deposit).await;
            sent += 1;
            acknowledged.store(sent, Ordering::Relaxed);
        }
        sent
    })
}

pub(crate) async fn wait_for(acknowledged: &AtomicUsize, at_least: usize) {
    let deadline = Instant::now() + PATIENCE;
    while acknowledged.load(Ordering::Relaxed) < at_least {
        assert!(Instant::now() < deadline, "the load stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every projection has applied every committed event, as `base` reports.
pub(crate) async fn caught_up(client: &reqwest::Client, base: &str, log: &EventLog) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let stored = log.count().await.expect("count");
        let visible = log
            .count_committed_after(custody_eventlog::CommitPosition::START)
            .await
            .expect("visible");
        let body = ops(client, base, "/api/v1/ops/projections").await;
        let behind = body["projections"]
            .as_array()
            .is_none_or(|all| all.iter().any(|p| p["lag_events"].as_i64() != Some(0)));
        if visible >= stored && !behind {
            return;
        }
        assert!(Instant::now() < deadline, "projections behind: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every acknowledged deposit is exactly one event: as many documents as deposits acknowledged,
/// each with one event.
async fn each_report_once(log: &EventLog, acknowledged: usize) {
    let documents = log.aggregate_ids("Document").await.expect("documents");
    assert_eq!(documents.len(), acknowledged, "one document per deposit");
    for zjbs in &documents {
        let events = log.events_of("Document", zjbs).await.expect("events");
        assert_eq!(events.len(), 1, "{zjbs}: one deposit, one event");
    }
}

/// Where each projector and process manager stands, from the database.
async fn cursors(log: &EventLog) -> BTreeMap<String, (i64, i64)> {
    let mut all = BTreeMap::new();
    for table in ["projections", "process_cursors"] {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT name, cursor_tx, cursor_position FROM {table}"
        ))
        .fetch_all(log.platform().pool())
        .await
        .expect("cursors");
        for (name, tx, position) in rows {
            all.insert(format!("{table}/{name}"), (tx, position));
        }
    }
    all
}

/// The log and a command service over `url`, opening personal data as the instances do.
pub(crate) async fn connect(url: &str) -> (EventLog, Commands) {
    let log = EventLog::connect_postgres(url, 5)
        .await
        .expect("connect")
        .with_personal_data(Arc::new(
            custody_vault::MasterKeyFile::load_or_generate(&shared_master_key())
                .expect("the shared master key"),
        ));
    let commands = Commands::new(log.clone(), Arc::new(SystemClock));
    (log, commands)
}

struct Cluster {
    log: EventLog,
    commands: Commands,
    client: reqwest::Client,
    hook: Webhook,
    a: Instance,
    b: Instance,
}

impl Cluster {
    /// Two instances, `a` started (and holding every lease) before `b`.
    async fn start() -> Cluster {
        custody_tests::logs::capture();
        let url = postgres().fresh_database().await;
        let (hook, webhook) = Webhook::start().await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let a = Instance::start("a", &url, &webhook, None);
        a.healthy(&client).await;
        let b = Instance::start("b", &url, &webhook, Some(&a.checkpoint_key()));
        b.healthy(&client).await;
        let (log, commands) = connect(&url).await;
        Cluster {
            log,
            commands,
            client,
            hook,
            a,
            b,
        }
    }

    fn bases(&self) -> Vec<String> {
        vec![self.a.base.clone(), self.b.base.clone()]
    }
}

#[tokio::test]
async fn two_instances_run_each_worker_once_and_one_takes_over_from_a_killed_holder() {
    let mut cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());

    // Every worker once, the same answer from both, all in the first instance.
    let holders = workers_settled(&client, &[&a, &b], Some("a")).await;
    assert_eq!(holders.len(), WORKERS.len());
    let instances = ops(&client, &b, "/api/v1/ops/workers").await["instances"].clone();
    let live: BTreeSet<&str> = instances
        .as_array()
        .expect("instances")
        .iter()
        .filter_map(|i| i["instance"].as_str())
        .collect();
    assert_eq!(live, BTreeSet::from(["a", "b"]), "both heartbeat");
    let projections = ops(&client, &b, "/api/v1/ops/projections").await;
    assert!(
        projections["projections"]
            .as_array()
            .expect("projections")
            .iter()
            .all(|p| p["instance"] == "a"),
        "{projections}"
    );

    // An explicit scheduler pass is the holder's: the other instance declines it.
    for (base, expected) in [(&a, 200), (&b, 409)] {
        let answer = client
            .post(format!("{base}/api/v1/ops/scheduler/run"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .expect("scheduler run");
        assert_eq!(answer.status(), expected, "{base}");
    }

    // Both instances have the webhook: each notification is delivered once.
    let before = queue_notifications(&cluster.log, "before", 20).await;
    all_delivered(&cluster.log, &before).await;

    let cabinet = Arc::new(active_cabinet(&client, &a).await);
    let running = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let load = spawn_load(
        client.clone(),
        cabinet.clone(),
        cluster.bases(),
        running.clone(),
        acknowledged.clone(),
    );
    wait_for(&acknowledged, 30).await;

    // kill -9 the holder of every worker, under load.
    let killed_at = Instant::now();
    cluster.a.kill();
    // The outage a client sees: a report meant for the dead instance, retried on the other.
    let record = random_document_record(&mut rand::rng());
    let deposit = cabinet
        .deposit(&record, &cabinet.drawer(0), DepositKind::New, now_ms())
        .expect("deposit");
    let took = send_until_acknowledged(&client, &cabinet, &cluster.bases(), 0, &deposit).await;
    let outage = killed_at.elapsed();
    assert_eq!(took, 1, "the survivor acknowledged it");
    println!(
        "ingress outage, kill -9 of one of two instances to the first report acknowledged by \
         the other: {} ms",
        outage.as_millis()
    );

    let holders = workers_settled(&client, &[&b], Some("b")).await;
    println!(
        "workers taken over by b {} ms after the kill: {holders:?}",
        killed_at.elapsed().as_millis()
    );
    let after = queue_notifications(&cluster.log, "after", 20).await;
    let more = acknowledged.load(Ordering::Relaxed) + 30;
    wait_for(&acknowledged, more).await;
    running.store(false, Ordering::Relaxed);
    let sent = load.await.expect("load");
    all_delivered(&cluster.log, &after).await;
    each_once(&cluster.hook, &before);
    each_once(&cluster.hook, &after);

    caught_up(&client, &b, &cluster.log).await;
    assert_views_equal_replay_of(&cluster.log, &cluster.commands).await;
    // The load's deposits and the one sent across the kill.
    each_report_once(&cluster.log, sent + 1).await;
}

#[tokio::test]
async fn a_paused_holder_loses_its_leases_and_writes_nothing_when_it_wakes() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());
    workers_settled(&client, &[&a, &b], Some("a")).await;
    let first = queue_notifications(&cluster.log, "first", 10).await;
    all_delivered(&cluster.log, &first).await;
    let cabinet = active_cabinet(&client, &b).await;
    let only_b = vec![b.clone()];
    let deposit_on = |bases: Vec<String>| {
        let (client, cabinet) = (&client, &cabinet);
        async move {
            for i in 0..10 {
                let record = random_document_record(&mut rand::rng());
                let deposit = cabinet
                    .deposit(&record, &cabinet.drawer(i), DepositKind::New, now_ms())
                    .expect("deposit");
                send_until_acknowledged(client, cabinet, &bases, i % bases.len(), &deposit).await;
            }
        }
    };
    deposit_on(only_b.clone()).await;

    // SIGSTOP the holder: the other takes every worker over.
    cluster.a.signal("STOP");
    let stopped_at = Instant::now();
    workers_settled(&client, &[&b], Some("b")).await;
    println!(
        "workers taken over from a stopped holder after {} ms",
        stopped_at.elapsed().as_millis()
    );
    let second = queue_notifications(&cluster.log, "second", 10).await;
    deposit_on(only_b.clone()).await;
    all_delivered(&cluster.log, &second).await;
    caught_up(&client, &b, &cluster.log).await;
    let taken_over = cursors(&cluster.log).await;

    // SIGCONT: the woken instance finds its leases gone and stops its workers; its writes
    // under the old tokens are refused.
    cluster.a.signal("CONT");
    let deadline = Instant::now() + PATIENCE;
    while !cluster.a.log().contains("lease lost") {
        assert!(
            Instant::now() < deadline,
            "the woken instance did not notice: {}",
            cluster.a.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // It serves ingress again, beside the holder.
    deposit_on(vec![a.clone(), b.clone()]).await;
    let third = queue_notifications(&cluster.log, "third", 10).await;
    all_delivered(&cluster.log, &third).await;
    caught_up(&client, &b, &cluster.log).await;
    let holders = workers_settled(&client, &[&a, &b], Some("b")).await;
    assert_eq!(holders.len(), WORKERS.len());
    let now = cursors(&cluster.log).await;
    for (name, position) in &taken_over {
        assert!(
            now.get(name).is_some_and(|p| p >= position),
            "{name} moved back: {position:?} → {:?}",
            now.get(name)
        );
    }
    for ids in [&first, &second, &third] {
        each_once(&cluster.hook, ids);
    }
    assert_views_equal_replay_of(&cluster.log, &cluster.commands).await;
    each_report_once(&cluster.log, 30).await;
}

#[tokio::test]
async fn a_cabinet_disabled_through_one_instance_is_refused_by_the_other() {
    let cluster = Cluster::start().await;
    let client = cluster.client.clone();
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());
    // Enrolled and activated through a; b learns of it on its first report.
    let cabinet = active_cabinet(&client, &a).await;
    let deposit = |i: usize| {
        let record = random_document_record(&mut rand::rng());
        cabinet
            .deposit(&record, &cabinet.drawer(i), DepositKind::New, now_ms())
            .expect("deposit")
    };
    let (status, body) = custody_simulator::post(&client, &b, &deposit(0))
        .await
        .expect("post");
    assert_eq!((status, &body["status"]), (200, &json!(true)), "{body}");

    let disabled = client
        .post(format!(
            "{a}/api/v1/ops/devices/{}/disable",
            cabinet.device_serial()
        ))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    let (status, body) = custody_simulator::post(&client, &a, &deposit(1))
        .await
        .expect("post");
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("E_DEVICE_DISABLED"))
    );
    // The other instance's registry follows within seconds.
    let deadline = Instant::now() + PATIENCE;
    for i in 2.. {
        let (status, body) = custody_simulator::post(&client, &b, &deposit(i))
            .await
            .expect("post");
        if body["error_code"] == "E_DEVICE_DISABLED" {
            assert_eq!(status, 401);
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            Instant::now() < deadline,
            "b still takes the disabled cabinet"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client that does not follow redirects, to see where the department page sends a request.
fn page_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn page(client: &reqwest::Client, base: &str, session: &str) -> reqwest::Response {
    client
        .get(format!("{base}/ui/"))
        .header("cookie", format!("{}={session}", custody_api::ui::COOKIE))
        .send()
        .await
        .expect("page")
}

#[tokio::test]
async fn a_department_page_session_made_on_one_instance_holds_on_the_other() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());
    let client = page_client();
    let unit = custody_simulator::generate::random_credit_code(&mut rand::rng());
    let made = cluster
        .client
        .post(format!("{a}/api/v1/ops/orgs"))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"code": unit, "name": "测试单位", "parent": null}))
        .send()
        .await
        .expect("create the unit");
    assert_eq!(made.status(), 201);
    let issued: Value = cluster
        .client
        .post(format!("{a}/api/v1/ops/tokens"))
        .bearer_auth(OPS_TOKEN)
        .json(&json!({"role": "reader", "org": unit, "scopes": []}))
        .send()
        .await
        .expect("issue a token")
        .json()
        .await
        .expect("token JSON");
    let token = issued["token"].as_str().expect("token secret");

    // Signed in through a.
    let signed_in = client
        .post(format!("{a}/ui/login"))
        .form(&[("token", token)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{}=", custody_api::ui::COOKIE)))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_string();
    assert_eq!(page(&client, &a, &cookie).await.status(), 200);

    // The other instance knows the session, as a load balancer sending the browser there needs.
    let there = page(&client, &b, &cookie).await;
    assert_eq!(there.status(), 200, "b takes a's session");
    let html = there.text().await.expect("page");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the session's CSRF value in the page")
        .to_string();

    // Signed out through b: ended on a too.
    let signed_out = client
        .post(format!("{b}/ui/logout"))
        .header("cookie", format!("{}={cookie}", custody_api::ui::COOKIE))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("sign out");
    assert_eq!(signed_out.status(), 303);
    for base in [&a, &b] {
        let after = page(&client, base, &cookie).await;
        assert_eq!(after.status(), 303, "{base}");
        assert_eq!(after.headers()["location"], "/ui/login");
    }
}
