//! The test harness: real servers, started once per test run (one test binary), and the app
//! spawned on a random port.
//!
//! - [`postgres()`]: a throwaway PostgreSQL cluster (initdb as the `postgres` user when the
//!   tests run as root, since initdb refuses root), on a random loopback port; every test takes
//!   its own database from it with [`PostgresServer::fresh_database`].
//! - [`PostgresPair`]: a primary and a synchronous standby made from it (`pg_basebackup -R`), for
//!   a failover test to kill the one and promote the other.
//! - [`nats()`]: a nats-server with JetStream on a random loopback port and a temporary store;
//!   [`NatsServer::start`] gives a test its own server to kill and restart.
//! - Each server is watched by a small shell loop that stops it by PID, and removes its
//!   directory, once the test process is gone: statics are never dropped in Rust.
//!
//! Servers write to log files in their directory, never to inherited stdout/stderr, so a
//! leftover process can never hold the test runner's output pipe open.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use custody_api::wire::admission::AdmissionConfig;
use custody_api::wire::rejection_quota::RejectionLogConfig;
use custody_api::ProtocolConfig;
use custody_api::{App, AppState, ServeConfig, StoreChoice, Transport};
use custody_commands::{Clock, ManualClock, SystemClock};
use custody_eventlog::EventLog;
use custody_protocol::SignedRequest;
use custody_simulator::{CabinetSpec, SimulatedCabinet};
use tempfile::TempDir;

pub mod bench_args;
pub mod logs;
pub mod samples;

/// Which event store a test runs on. Tests that must hold on both run once per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Embedded,
    Postgres,
}

impl StoreKind {
    pub const ALL: [StoreKind; 2] = [StoreKind::Embedded, StoreKind::Postgres];
}

/// A fresh, empty event store of the given kind, with what keeps it alive.
pub struct TestStore {
    pub kind: StoreKind,
    pub log: EventLog,
    pub choice: StoreChoice,
    pub data_dir: TempDir,
}

impl TestStore {
    /// A store in a fresh database of `server` (a test's own cluster).
    pub async fn postgres_on(server: &PostgresServer) -> TestStore {
        let data_dir = tempfile::Builder::new()
            .prefix("custody-data-")
            .tempdir()
            .expect("temporary data directory");
        let url = server.fresh_database().await;
        let log = EventLog::connect_postgres(&url, 10)
            .await
            .expect("connect to the test PostgreSQL");
        TestStore {
            kind: StoreKind::Postgres,
            log: with_master_key(log, data_dir.path()),
            choice: StoreChoice::Postgres { url },
            data_dir,
        }
    }

    pub async fn new(kind: StoreKind) -> TestStore {
        let data_dir = tempfile::Builder::new()
            .prefix("custody-data-")
            .tempdir()
            .expect("temporary data directory");
        let (log, choice) = match kind {
            StoreKind::Embedded => (
                EventLog::open_embedded(data_dir.path())
                    .await
                    .expect("open the embedded store"),
                StoreChoice::Embedded,
            ),
            StoreKind::Postgres => {
                let url = postgres().fresh_database().await;
                (
                    EventLog::connect_postgres(&url, 40)
                        .await
                        .expect("connect to the test PostgreSQL"),
                    StoreChoice::Postgres { url },
                )
            }
        };
        TestStore {
            kind,
            log: with_master_key(log, data_dir.path()),
            choice,
            data_dir,
        }
    }
}

/// The log as the service opens it: sealing personal data under the data directory's master key
/// (the very file `custody serve` generates or reads there), so that a test reading the store
/// directly opens what the service sealed.
fn with_master_key(log: EventLog, data_dir: &Path) -> EventLog {
    let master = custody_vault::MasterKeyFile::load_or_generate(
        &custody_vault::MasterKeyFile::default_path(data_dir),
    )
    .expect("the test store's master key");
    log.with_personal_data(Arc::new(master))
}

/// How a test wants its app.
#[derive(Clone)]
pub struct AppOptions {
    pub clock: ManualClock,
    /// The platform key file (the shared fixture's, to open GmSSL-made envelopes); generated
    /// when None.
    pub platform_key: Option<PathBuf>,
    pub admission: AdmissionConfig,
    pub protocol: ProtocolConfig,
    /// How events reach the projectors: the store (default) or a JetStream stream.
    pub transport: Transport,
    /// Where new checkpoints are appended (`serve --checkpoint-witness`).
    pub checkpoint_witness: Option<PathBuf>,
    /// The rejected-reports log's bounds (cap per source a minute, retention).
    pub rejection_log: RejectionLogConfig,
    /// Where reminders are delivered (none: they stay queued in the outbox).
    pub webhook: Option<custody_processes::WebhookConfig>,
    /// Seal personal data at rest (always, but for the sealing benchmark's "before" run).
    pub seal_personal_data: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            clock: ManualClock::at(SystemClock.now()),
            platform_key: None,
            // Generous, so that only the admission tests meet the limits.
            admission: AdmissionConfig {
                per_sender_rate: 100_000.0,
                per_sender_burst: 100_000.0,
                global_rate: 100_000.0,
                global_burst: 100_000.0,
                per_source_rate: 100_000.0,
                per_source_burst: 100_000.0,
                ..AdmissionConfig::default()
            },
            protocol: ProtocolConfig::default(),
            transport: Transport::Store,
            checkpoint_witness: None,
            rejection_log: RejectionLogConfig::default(),
            webhook: None,
            seal_personal_data: true,
        }
    }
}

/// The operator token every test app starts with.
pub const OPS_TOKEN: &str = "test-operator-token-0123456789abcdef";

/// The app, serving on a random loopback port.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub store: TestStore,
    pub options: AppOptions,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    /// Spawns the app on a fresh store of `kind`, its clock set to now.
    pub async fn spawn(kind: StoreKind) -> TestApp {
        Self::spawn_with(kind, AppOptions::default()).await
    }

    pub async fn spawn_with_clock(kind: StoreKind, clock: ManualClock) -> TestApp {
        Self::spawn_with(
            kind,
            AppOptions {
                clock,
                ..AppOptions::default()
            },
        )
        .await
    }

    pub async fn spawn_with(kind: StoreKind, options: AppOptions) -> TestApp {
        Self::serve(TestStore::new(kind).await, options).await
    }

    /// Serves the app over an existing store (a restart keeps its data).
    pub async fn serve(store: TestStore, options: AppOptions) -> TestApp {
        logs::capture();
        let mut config = ServeConfig::embedded(
            "127.0.0.1:0".parse().expect("loopback address"),
            store.data_dir.path().to_path_buf(),
        );
        config.store = store.choice.clone();
        config.max_connections = 20;
        config.platform_key = options.platform_key.clone();
        config.ops_token = Some(OPS_TOKEN.to_string());
        config.admission = options.admission;
        config.protocol = options.protocol;
        config.transport = options.transport.clone();
        config.checkpoint_witness = options.checkpoint_witness.clone();
        config.rejection_log = options.rejection_log;
        config.processes.webhook = options.webhook.clone();
        config.seal_personal_data = options.seal_personal_data;
        let app = App::build_with_clock(&config, Arc::new(options.clock.clone()))
            .await
            .expect("build the app");
        let address = app.local_addr().expect("bound address");
        let state = app.state.clone();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = app
                .serve(async {
                    let _ = stop.await;
                })
                .await;
        });
        TestApp {
            address,
            client: reqwest::Client::new(),
            clock: options.clock.clone(),
            store,
            options,
            state,
            shutdown: Some(shutdown),
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// An ops call with the operator token: status and JSON body.
    pub async fn ops(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(OPS_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("ops request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Posts a raw body to the ingress: status and JSON body.
    pub async fn post_raw(&self, mstype: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let response = self
            .client
            .post(self.url(&format!("/yth_g1xt/api/v1/{mstype}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingress request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Now on the app's clock, in epoch milliseconds (the `c.time` of a fresh request).
    pub fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    pub fn platform_certificate_pem(&self) -> String {
        self.state.platform_key.certificate_pem.clone()
    }

    /// Creates a unit in the org tree; returns its credit code.
    pub async fn unit(&self) -> String {
        let code = custody_simulator::generate::random_credit_code(&mut rand::rng());
        let (status, body) = self
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/orgs",
                Some(serde_json::json!({"code": code, "name": "测试单位", "parent": null})),
            )
            .await;
        assert_eq!(status, 201, "create unit: {body}");
        code
    }

    /// A new simulated cabinet of a new unit, enrolled by the operator.
    pub async fn enrolled_cabinet(&self) -> SimulatedCabinet {
        let unit = self.unit().await;
        let spec = CabinetSpec::random(&mut rand::rng(), &unit, "测试单位");
        let cabinet = SimulatedCabinet::new(spec, &self.platform_certificate_pem())
            .expect("simulated cabinet");
        self.enroll(&cabinet).await;
        cabinet
    }

    pub async fn enroll(&self, cabinet: &SimulatedCabinet) {
        let body = serde_json::to_value(cabinet.enrollment()).expect("enrollment JSON");
        let (status, answer) = self
            .ops(reqwest::Method::POST, "/api/v1/ops/devices", Some(body))
            .await;
        assert_eq!(status, 201, "enroll: {answer}");
    }

    /// A new simulated cabinet, enrolled and activated by its own signed message.
    pub async fn active_cabinet(&self) -> SimulatedCabinet {
        let cabinet = self.enrolled_cabinet().await;
        self.activate(&cabinet).await;
        cabinet
    }

    pub async fn activate(&self, cabinet: &SimulatedCabinet) {
        let activation = cabinet.activation(self.now_ms()).expect("activation");
        let (status, answer) = self.send(&activation).await;
        assert_eq!(status, 200, "activate: {answer}");
    }

    /// Posts a signed request to the ingress: status and JSON body.
    pub async fn send(&self, request: &SignedRequest) -> (u16, serde_json::Value) {
        custody_simulator::post(&self.client, &format!("http://{}", self.address), request)
            .await
            .expect("post a signed request")
    }

    /// Waits until every projection has applied every committed event (at most 60 s).
    pub async fn caught_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // On PostgreSQL the feed sees only what lies below the cluster's oldest running
            // transaction (docs/architecture.md): an event another test's transaction holds
            // back is not yet lag. So first wait until the feed sees every event stored by
            // now, and only then ask whether the projections have applied all they see: in
            // the other order, the two answers could be about different moments.
            let stored = self.store.log.count().await.expect("count events");
            let visible = self
                .store
                .log
                .count_committed_after(custody_eventlog::CommitPosition::START)
                .await
                .expect("count visible events");
            let (status, body) = self
                .ops(reqwest::Method::GET, "/api/v1/ops/projections", None)
                .await;
            assert_eq!(status, 200, "projections: {body}");
            let behind = body["projections"]
                .as_array()
                .map(|all| all.iter().any(|p| p["lag_events"].as_i64() != Some(0)))
                .unwrap_or(true);
            if visible >= stored && !behind {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "projections did not catch up: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A read-API call with `token`: status and JSON body.
    pub async fn read(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("read request");
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Issues a token of `role` for `org` with `scopes`; returns its secret.
    pub async fn token(&self, role: &str, org: &str, scopes: &[&str]) -> String {
        let (status, body) = self
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/tokens",
                Some(serde_json::json!({"role": role, "org": org, "scopes": scopes})),
            )
            .await;
        assert_eq!(status, 201, "token: {body}");
        body["token"].as_str().expect("token secret").to_string()
    }

    /// Creates an org node under `parent`; returns its code.
    pub async fn org_under(&self, parent: Option<&str>, name: &str) -> String {
        let code = custody_simulator::generate::random_credit_code(&mut rand::rng());
        let (status, body) = self
            .ops(
                reqwest::Method::POST,
                "/api/v1/ops/orgs",
                Some(serde_json::json!({"code": code, "name": name, "parent": parent})),
            )
            .await;
        assert_eq!(status, 201, "create org: {body}");
        code
    }

    /// A new simulated cabinet of `unit`, enrolled and activated.
    /// The org tree most scoping tests need: a department (组织部) with two units under it,
    /// ours (本单位) and a sibling (兄弟单位). Returns (department, ours, theirs).
    pub async fn department_with_two_units(&self) -> (String, String, String) {
        let department = self.org_under(None, "组织部").await;
        let ours = self.org_under(Some(&department), "本单位").await;
        let theirs = self.org_under(Some(&department), "兄弟单位").await;
        (department, ours, theirs)
    }

    /// One scrape of `/metrics` with the operator token: its text.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(OPS_TOKEN)
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    pub async fn active_cabinet_of(&self, unit: &str) -> SimulatedCabinet {
        let spec = CabinetSpec::random(&mut rand::rng(), unit, "测试单位");
        let cabinet = SimulatedCabinet::new(spec, &self.platform_certificate_pem())
            .expect("simulated cabinet");
        self.enroll(&cabinet).await;
        self.activate(&cabinet).await;
        cabinet
    }

    /// Stops serving and waits until the server has finished.
    pub async fn stop(mut self) -> TestStore {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        let personal = logs::personal_data_lines();
        assert!(
            personal.is_empty(),
            "log lines of this test run hold a citizen ID or a document number: {personal:#?}"
        );
        let TestApp { store, .. } = self;
        store
    }
}

/// A throwaway PostgreSQL cluster.
pub struct PostgresServer {
    /// `postgres://postgres@127.0.0.1:PORT` (trust authentication on loopback).
    pub server_url: String,
    pub pid: u32,
    pub dir: PathBuf,
}

/// The PostgreSQL of this test run, started on first use.
pub fn postgres() -> &'static PostgresServer {
    static SERVER: OnceLock<PostgresServer> = OnceLock::new();
    SERVER.get_or_init(|| PostgresServer::start().unwrap_or_else(|e| panic!("{e}")))
}

/// A PostgreSQL cluster of the caller's own, to stop and start again (the shared one serves
/// every other test of the run).
pub struct OwnPostgres {
    pub server: PostgresServer,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl OwnPostgres {
    pub fn start() -> Result<OwnPostgres, String> {
        let (server, data, port, child) = PostgresServer::start_cluster()?;
        Ok(OwnPostgres {
            server,
            data,
            port,
            child: Some(child),
        })
    }

    /// A fast shutdown (SIGINT: open sessions are ended), waited for.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data directory, and waits until it takes sessions.
    pub fn restart(&mut self) -> Result<(), String> {
        let child = PostgresServer::spawn(&self.data, &self.server.dir, self.port)?;
        self.server.pid = child.id();
        self.child = Some(child);
        watch(self.server.pid, &self.server.dir, "INT")?;
        PostgresServer::wait_ready(&self.data, &self.server.dir)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL primary with a synchronous standby streaming from it, both on loopback ports
/// (docs/scaling.md, "PostgreSQL with a synchronous standby"): the primary answers a commit
/// only once the standby has flushed it (`synchronous_commit = on`, the standby named in
/// `synchronous_standby_names`), so the standby, once promoted, holds every commit that was
/// answered. The standby is made as an operator makes one: `pg_basebackup -R` of the primary.
pub struct PostgresPair {
    pub primary: PostgresServer,
    pub standby: PostgresServer,
    standby_data: PathBuf,
    primary_child: Option<Child>,
    standby_child: Option<Child>,
}

impl PostgresPair {
    /// The standby's `cluster_name`, which its WAL receiver gives the primary as its name.
    pub const STANDBY_NAME: &'static str = "standby";

    pub fn start() -> Result<PostgresPair, String> {
        let primary_dir = temp_dir("custody-pg-primary-")?;
        let primary_data = PostgresServer::initdb(&primary_dir)?;
        let primary_port = free_port()?;
        let primary_child = PostgresServer::spawn_with(
            &primary_data,
            &primary_dir,
            primary_port,
            &[
                ("wal_level", "replica"),
                ("max_wal_senders", "4"),
                ("synchronous_commit", "on"),
                ("synchronous_standby_names", Self::STANDBY_NAME),
            ],
        )?;
        watch(primary_child.id(), &primary_dir, "INT")?;
        PostgresServer::wait_ready(&primary_data, &primary_dir)?;

        let standby_dir = temp_dir("custody-pg-standby-")?;
        PostgresServer::own_directory(&standby_dir)?;
        let standby_data = standby_dir.join("data");
        let mut basebackup = PostgresServer::tool("pg_basebackup")?;
        basebackup
            .arg("-D")
            .arg(&standby_data)
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
            // -R: standby.signal and primary_conninfo, so it starts as the primary's standby.
            .args(["-U", "postgres", "-R", "-X", "stream", "--checkpoint=fast"])
            .arg("--no-sync");
        run(&mut basebackup, "pg_basebackup")?;
        let standby_port = free_port()?;
        let standby_child = PostgresServer::spawn_with(
            &standby_data,
            &standby_dir,
            standby_port,
            &[("cluster_name", Self::STANDBY_NAME), ("hot_standby", "on")],
        )?;
        watch(standby_child.id(), &standby_dir, "INT")?;
        // A hot standby's postmaster.pid does not say `ready`: ask it whether it takes sessions.
        wait_until(Duration::from_secs(60), || {
            PostgresServer::tool("pg_isready")
                .and_then(|mut c| {
                    run(
                        c.args(["-h", "127.0.0.1", "-p", &standby_port.to_string()]),
                        "pg_isready",
                    )
                })
                .is_ok()
        })
        .map_err(|_| {
            format!(
                "the standby did not start; its log: {}",
                fs::read_to_string(standby_dir.join("postgres.log")).unwrap_or_default()
            )
        })?;
        Ok(PostgresPair {
            primary: PostgresServer {
                server_url: format!("postgres://postgres@127.0.0.1:{primary_port}"),
                pid: primary_child.id(),
                dir: primary_dir,
            },
            standby: PostgresServer {
                server_url: format!("postgres://postgres@127.0.0.1:{standby_port}"),
                pid: standby_child.id(),
                dir: standby_dir,
            },
            standby_data,
            primary_child: Some(primary_child),
            standby_child: Some(standby_child),
        })
    }

    /// The primary's machine lost: SIGKILL to the postmaster and to each of its processes at
    /// once, so no backend lives on to finish anything.
    pub fn kill_primary(&mut self) {
        let Some(mut child) = self.primary_child.take() else {
            return;
        };
        let children = Command::new("ps")
            .args(["-o", "pid=", "--ppid", &child.id().to_string()])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut kill = Command::new("kill");
        kill.args(["-KILL", &child.id().to_string()]);
        kill.args(children.split_whitespace());
        let _ = kill.status();
        let _ = child.wait();
    }

    /// Promotes the standby (`pg_ctl promote`) and waits until it takes writes.
    pub fn promote(&self) -> Result<(), String> {
        let mut promote = PostgresServer::tool("pg_ctl")?;
        promote
            .arg("promote")
            .arg("-D")
            .arg(&self.standby_data)
            .args(["-w", "-t", "60"]);
        run(&mut promote, "pg_ctl promote")?;
        PostgresServer::wait_ready(&self.standby_data, &self.standby.dir)
    }
}

impl Drop for PostgresPair {
    fn drop(&mut self) {
        for mut child in [self.primary_child.take(), self.standby_child.take()]
            .into_iter()
            .flatten()
        {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl PostgresServer {
    fn start() -> Result<PostgresServer, String> {
        // The shared cluster lives as long as the test process; its watchdog stops it.
        Self::start_cluster().map(|(server, ..)| server)
    }

    fn start_cluster() -> Result<(PostgresServer, PathBuf, u16, Child), String> {
        let dir = temp_dir("custody-pg-")?;
        let data = Self::initdb(&dir)?;
        let port = free_port()?;
        let child = Self::spawn(&data, &dir, port)?;
        let pid = child.id();
        watch(pid, &dir, "INT")?;
        Self::wait_ready(&data, &dir)?;
        Ok((
            PostgresServer {
                server_url: format!("postgres://postgres@127.0.0.1:{port}"),
                pid,
                dir,
            },
            data,
            port,
            child,
        ))
    }

    /// A directory the server may own: the `postgres` user's when the tests run as root
    /// (initdb and postgres refuse root).
    fn own_directory(dir: &Path) -> Result<(), String> {
        if !running_as_root() {
            return Ok(());
        }
        let status = Command::new("chown")
            .args(["postgres:postgres", &dir.display().to_string()])
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("chown of the PostgreSQL directory failed".into());
        }
        Ok(())
    }

    /// A PostgreSQL tool, run as the `postgres` user when the tests run as root.
    fn tool(name: &str) -> Result<Command, String> {
        let bin = postgres_bin_dir()?;
        // A PATH may link only some of the tools (initdb, postgres): the others are beside
        // what the links point to.
        let path = [bin.join(name)]
            .into_iter()
            .chain(
                fs::canonicalize(bin.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(|dir| dir.join(name))),
            )
            .find(|p| p.is_file())
            .unwrap_or_else(|| bin.join(name));
        Ok(if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        })
    }

    /// A new cluster in `dir`/data; its data directory.
    fn initdb(dir: &Path) -> Result<PathBuf, String> {
        let data = dir.join("data");
        Self::own_directory(dir)?;
        let mut init = Self::tool("initdb")?;
        init.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(&mut init, "initdb")?;
        Ok(data)
    }

    fn spawn(data: &Path, dir: &Path, port: u16) -> Result<Child, String> {
        // A throwaway cluster: durability is not what these tests measure.
        Self::spawn_with(data, dir, port, &[("synchronous_commit", "off")])
    }

    /// Starts `postgres` with `settings` (`-c name=value`) beside the test defaults.
    fn spawn_with(
        data: &Path,
        dir: &Path,
        port: u16,
        settings: &[(&str, &str)],
    ) -> Result<Child, String> {
        let bin = postgres_bin_dir()?;
        let as_postgres = running_as_root();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("postgres.log"))
            .map_err(|e| e.to_string())?;
        let mut server = Command::new(bin.join("postgres"));
        server
            .arg("-D")
            .arg(data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            .arg("-k")
            .arg(dir)
            // No fsync: the tests kill processes, never the machine, so what a server wrote
            // is in the page cache for the next one to read.
            .args(["-c", "fsync=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
            .args(
                settings
                    .iter()
                    .flat_map(|(name, value)| ["-c".to_string(), format!("{name}={value}")]),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        if as_postgres {
            let (uid, gid) = user_ids("postgres")?;
            server.uid(uid).gid(gid);
        }
        server
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))
    }

    fn wait_ready(data: &Path, dir: &Path) -> Result<(), String> {
        wait_until(Duration::from_secs(60), || {
            fs::read_to_string(data.join("postmaster.pid"))
                .map(|pidfile| pidfile.lines().nth(7).map(str::trim) == Some("ready"))
                .unwrap_or(false)
        })
        .map_err(|_| {
            format!(
                "PostgreSQL did not become ready; its log: {}",
                fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
            )
        })
    }

    /// A new, empty database of its own for one test; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("custody_{}", uuid::Uuid::new_v4().simple());
        let admin_url = format!("{}/postgres", self.server_url);
        let mut last_error = String::new();
        for _ in 0..50 {
            match sqlx::PgPool::connect(&admin_url).await {
                Ok(pool) => {
                    match sqlx::query(&format!("CREATE DATABASE {name}"))
                        .execute(&pool)
                        .await
                    {
                        Ok(_) => {
                            pool.close().await;
                            return format!("{}/{name}", self.server_url);
                        }
                        Err(e) => last_error = e.to_string(),
                    }
                    pool.close().await;
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("cannot create a test database: {last_error}");
    }
}

/// A nats-server with JetStream.
pub struct NatsServer {
    pub url: String,
    pub port: u16,
    pub store_dir: PathBuf,
    child: Child,
    dir: PathBuf,
    /// Options beyond the port and store (a cluster node's name and routes).
    options: Vec<String>,
}

/// The nats-server of this test run, started on first use.
pub fn nats() -> &'static NatsServerInfo {
    static SERVER: OnceLock<NatsServerInfo> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = NatsServer::start().unwrap_or_else(|e| panic!("{e}"));
        let info = NatsServerInfo {
            url: server.url.clone(),
            pid: server.child.id(),
        };
        // The shared server lives as long as the test process; its watchdog stops it.
        std::mem::forget(server);
        info
    })
}

/// Where the shared nats-server is.
pub struct NatsServerInfo {
    pub url: String,
    pub pid: u32,
}

impl NatsServer {
    /// Starts a nats-server of the caller's own (to kill and restart in fault tests).
    pub fn start() -> Result<NatsServer, String> {
        Self::start_with(free_port()?, Vec::new())
    }

    fn start_with(port: u16, options: Vec<String>) -> Result<NatsServer, String> {
        let dir = temp_dir("custody-nats-")?;
        let store_dir = dir.join("jetstream");
        let child = Self::spawn(port, &store_dir, &dir, &options)?;
        watch(child.id(), &dir, "TERM")?;
        let server = NatsServer {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            store_dir,
            child,
            dir,
            options,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn spawn(port: u16, store_dir: &Path, dir: &Path, options: &[String]) -> Result<Child, String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats.log"))
            .map_err(|e| e.to_string())?;
        Command::new(nats_server_binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(store_dir)
            .args(options)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start nats-server: {e}"))
    }

    fn wait_ready(&self) -> Result<(), String> {
        let address: SocketAddr = ([127, 0, 0, 1], self.port).into();
        wait_until(Duration::from_secs(30), || {
            TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok()
        })
        .map_err(|_| {
            format!(
                "nats-server did not start; its log: {}",
                fs::read_to_string(self.dir.join("nats.log")).unwrap_or_default()
            )
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would: no flush of JetStream's store.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store directory.
    pub fn restart(&mut self) -> Result<(), String> {
        self.child = Self::spawn(self.port, &self.store_dir, &self.dir, &self.options)?;
        watch(self.child.id(), &self.dir, "TERM")?;
        self.wait_ready()
    }
}

/// A JetStream cluster of nodes on loopback, each routed to the others.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    pub fn start(size: usize) -> Result<NatsCluster, String> {
        let ports: Vec<(u16, u16)> = (0..size)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_, String>>()?;
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, cluster)| format!("nats://127.0.0.1:{cluster}"))
            .collect();
        let name = format!("custody-{}", ports[0].0);
        let mut nodes = Vec::new();
        for (i, (port, cluster)) in ports.iter().enumerate() {
            let options = vec![
                "-n".to_string(),
                format!("node-{i}"),
                "--cluster_name".to_string(),
                name.clone(),
                "--cluster".to_string(),
                format!("nats://127.0.0.1:{cluster}"),
                "--routes".to_string(),
                routes.join(","),
            ];
            nodes.push(NatsServer::start_with(*port, options)?);
        }
        Ok(NatsCluster { nodes })
    }

    /// Every node's URL, comma-separated, as `--nats-url` takes them.
    pub fn url(&self) -> String {
        let urls: Vec<&str> = self.nodes.iter().map(|n| n.url.as_str()).collect();
        urls.join(",")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `command` to its end: an error with its output when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let output = Command::new("id")
            .args([flag, user])
            .output()
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("no user {user}"))
    };
    Ok((id("-u")?, id("-g")?))
}

/// The directory of initdb and postgres: on PATH, or Debian's /usr/lib/postgresql/N/bin.
fn postgres_bin_dir() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed (run scripts/test, which installs it)")?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no PostgreSQL server binaries under /usr/lib/postgresql".to_string())
}

/// The nats-server the tests run: `CUSTODY_TEST_NATS_SERVER` (scripts/test sets it to the
/// pinned 2.15.1 it fetches), else Debian's.
fn nats_server_binary() -> PathBuf {
    std::env::var_os("CUSTODY_TEST_NATS_SERVER")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .iter()
                .map(PathBuf::from),
        )
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

fn temp_dir(prefix: &str) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("temporary directory: {e}"))?
        .keep();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Stops `pid` with `signal` (then SIGKILL) and removes `dir` once this test process is gone.
fn watch(pid: u32, dir: &Path, signal: &str) -> Result<(), String> {
    let parent = std::process::id();
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
         kill -{signal} {pid} 2>/dev/null; \
         for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 {pid} 2>/dev/null || break; sleep 1; done; \
         kill -KILL {pid} 2>/dev/null; rm -rf '{}'",
        dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("cannot start the watchdog: {e}"))
}

fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(())
}

/// Where the shared fixtures are: `shared/` beside the repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}
