use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use custody_application::Application;
use custody_commands::{Clock, Commands, SystemClock};
use custody_eventlog::{EventLog, EventLogError, Lease, LeaseKeeper};
use tokio::net::TcpListener;

use crate::auth::secret_digest;
use crate::config::{ServeConfig, StoreChoice};
use crate::health::{health, ready};
use crate::ops::Grant;
use crate::platform_key::{CheckpointKey, PlatformKey, PlatformKeyError};
use crate::readside::ReadSide;
use crate::registry::{Registry, RegistryError};
use crate::state::AppState;
use crate::wire;
use crate::wire::admission::Admission;

/// A built service, bound to its address but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    pub state: AppState,
    /// The secret of the operator token generated at this first start, to show once.
    pub first_operator_token: Option<String>,
    /// The embedded store's data directory lock, held until [`App::serve`] returns.
    _data_directory: Option<std::fs::File>,
    /// Stops the lease keeper (which then releases this instance's leases), and its task.
    keeper: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

/// The worker leases of one instance (docs/scaling.md, "Leases"): one per group of workers
/// that must not run twice.
pub struct WorkerLeases {
    /// Every projector.
    pub projectors: Lease,
    /// The relay (log → JetStream), when NATS is configured.
    pub relay: Option<Lease>,
    /// The process managers: reminders, revocation cascade, scheduler, missing-upload check,
    /// and the outbox's webhook delivery.
    pub processes: Lease,
    /// The checkpointer's interval.
    pub checkpointer: Lease,
    /// Housekeeping: the rejected-reports retention and the request-id sweeper.
    pub maintenance: Lease,
}

impl WorkerLeases {
    /// The lease names, as `GET /api/v1/ops/workers` shows them.
    pub const PROJECTORS: &'static str = "projectors";
    pub const RELAY: &'static str = "relay";
    pub const PROCESSES: &'static str = "processes";
    pub const CHECKPOINTER: &'static str = "checkpointer";
    pub const MAINTENANCE: &'static str = "maintenance";

    fn register(keeper: &mut LeaseKeeper, relay: bool) -> WorkerLeases {
        WorkerLeases {
            projectors: keeper.lease(Self::PROJECTORS),
            relay: relay.then(|| keeper.lease(Self::RELAY)),
            processes: keeper.lease(Self::PROCESSES),
            checkpointer: keeper.lease(Self::CHECKPOINTER),
            maintenance: keeper.lease(Self::MAINTENANCE),
        }
    }
}

/// This instance's id: `--instance-id`, or its host name and the port it listens on.
fn instance_id(configured: Option<&str>, address: SocketAddr) -> String {
    if let Some(id) = configured {
        return id.to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| address.ip().to_string());
    format!("{host}:{}", address.port())
}

impl App {
    /// Opens the chosen store (applying its schema), binds the address, builds the routes.
    pub async fn build(config: &ServeConfig) -> Result<App, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`App::build`], with the clock every time rule reads (tests set it).
    pub async fn build_with_clock(
        config: &ServeConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<App, StartError> {
        // Taken before the store is opened: a second serve must not even migrate it.
        let data_directory = match config.store {
            StoreChoice::Embedded => Some(custody_eventlog::files::lock_data_directory(
                &config.data_dir,
            )?),
            StoreChoice::Postgres { .. } => None,
        };
        let log = match &config.store {
            StoreChoice::Embedded => EventLog::open_embedded(&config.data_dir).await?,
            StoreChoice::Postgres { url } => {
                connect_postgres_patiently(url, config.max_connections).await?
            }
        };
        let master = crate::master_key::load(
            &config.data_dir,
            config.master_key.as_deref(),
            config.previous_master_key.as_deref(),
        )?;
        let log = if config.seal_personal_data {
            log.with_personal_data(Arc::new(master))
        } else {
            log
        };
        if let Some(personal) = log.personal_data() {
            personal.check_master_keys().await?;
            // The blind-index key is made here, before any projector could need it.
            personal.index_keys().await?;
        }
        // Bound before the first operator token is made: a start that cannot listen must not
        // create a token it never shows (docs/security.md). Bound here, before the workers
        // start, because the instance id names the port.
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        let address = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
        let instance: Arc<str> = instance_id(config.instance_id.as_deref(), address).into();
        let mut keeper = LeaseKeeper::new(&log, &instance, config.leases);
        let leases = WorkerLeases::register(
            &mut keeper,
            matches!(config.transport, crate::Transport::JetStream { .. }),
        );
        let admission = Arc::new(Admission::new(config.admission));
        {
            let admission = admission.clone();
            keeper.on_instances(move |instances| admission.share_with(instances));
        }
        // The first round before any worker starts: a lone instance runs them at once.
        keeper.round().await;
        let (stop_keeper, keeper_stopped) = tokio::sync::oneshot::channel::<()>();
        let keeper_task = tokio::spawn(keeper.run(async {
            let _ = keeper_stopped.await;
        }));
        let platform_key =
            PlatformKey::load_or_generate(&config.data_dir, config.platform_key.as_deref())?;
        let checkpoint_key =
            CheckpointKey::load_or_generate(&config.data_dir, config.checkpoint_key.as_deref())?;
        let nats_witness = match &config.transport {
            crate::Transport::JetStream { url, settings } => {
                Some(crate::checkpointer::NatsWitness::connect(url, settings).await?)
            }
            crate::Transport::Store => None,
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let commands = Arc::new(Commands::new(log, clock).with_observer(metrics.clone()));
        let checkpointer = Arc::new(crate::checkpointer::Checkpointer::new(
            commands.clone(),
            checkpoint_key,
            config.checkpoint_witness.clone(),
            nats_witness,
        ));
        let sessions = Arc::new(crate::sessions::Sessions::new(
            commands.log().platform().clone(),
        ));
        let registry = Registry::load(&commands).await?;
        let read_side = ReadSide::start(
            commands.log(),
            &config.transport,
            crate::readside::ReadSideLeases {
                projectors: leases.projectors.clone(),
                relay: leases
                    .relay
                    .clone()
                    .unwrap_or_else(|| Lease::always(WorkerLeases::RELAY)),
            },
        )
        .await?;
        // The missing-upload check closes each business date with the upload window.
        let process_config = custody_processes::ProcessConfig {
            reconciliation_window: config.reconciliation_window,
            ..config.processes.clone()
        };
        let processes = custody_processes::Processes::start(
            commands.clone(),
            process_config,
            Some(metrics.clone()),
            Some(leases.processes.clone()),
        )
        .await?;
        let state = AppState {
            application: Application::new(commands.clone())
                .with_reconciliation_window(config.reconciliation_window),
            commands,
            registry: Arc::new(registry),
            platform_key: Arc::new(platform_key),
            admission,
            crypto: Arc::new(wire::crypto_pool::CryptoPool::per_core()),
            rejection_quota: Arc::new(wire::rejection_quota::RejectionQuota::new(
                config.rejection_log,
            )),
            rejection_spool: Arc::new(
                custody_eventlog::rejection_spool::RejectionSpool::open(&config.data_dir).map_err(
                    |source| StartError::Spool {
                        path: config.data_dir.clone(),
                        source,
                    },
                )?,
            ),
            protocol: config.protocol,
            read_side,
            processes,
            reconciliation_window: config.reconciliation_window,
            checkpointer,
            metrics,
            sessions,
            instance,
        };
        let first_operator_token = bootstrap_operator(&state, config.ops_token.as_deref()).await?;
        let router = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(crate::scrape::scrape))
            .route("/api/v1/openapi.json", get(crate::openapi::serve))
            .route("/yth_g1xt/api/v1/{mstype}", post(wire::receive))
            // The calls that walk the whole log (audit verify, export) are not bounded; every
            // other read waits on the store at most crate::deadline::STORE_BUDGET.
            .merge(crate::audit::routes())
            .merge(crate::checkpoints::routes())
            .merge(
                Router::new()
                    .merge(crate::ops::routes())
                    .merge(crate::read::routes())
                    .merge(crate::overdue::routes())
                    .merge(crate::reconciliations::routes())
                    .merge(crate::ui::routes())
                    .layer(axum::middleware::from_fn(crate::deadline::within_budget)),
            )
            .fallback(crate::error::no_such_route)
            .layer(axum::middleware::map_response(crate::error::json_errors))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::observe::observe,
            ))
            // The ingress reads its body itself (413 with a protocol answer); the other routes
            // take JSON bodies no larger.
            .layer(DefaultBodyLimit::max(wire::MAX_BODY_BYTES))
            .with_state(state.clone());
        state.registry.spawn_follower(state.commands.clone());
        spawn_request_id_sweeper(&state, leases.maintenance.clone());
        spawn_statistics_keeper(&state, leases.maintenance.clone());
        wire::rejection_log::spawn_retention(&state, leases.maintenance.clone());
        // Each instance's own spool file: drained by the instance that wrote it, unleased.
        wire::rejection_log::spawn_spool_drain(&state);
        state
            .checkpointer
            .spawn(config.checkpoint_interval, leases.checkpointer.clone());
        Ok(App {
            listener,
            router,
            state,
            first_operator_token,
            _data_directory: data_directory,
            keeper: Some((stop_keeper, keeper_task)),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), std::io::Error> {
        let read_side = self.state.read_side.clone();
        let processes = self.state.processes.clone();
        let keeper = self.keeper.take();
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        read_side.stop();
        processes.stop();
        // Released at once, so another instance takes over without waiting for the TTL.
        if let Some((stop, task)) = keeper {
            let _ = stop.send(());
            let _ = task.await;
        }
        served
    }
}

/// The longest pause between two attempts to reach PostgreSQL at start.
const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(10);

/// Connects to PostgreSQL, waiting for it as long as it takes while it cannot be reached (a
/// database that starts after the service, or restarts under it, needs no outside restart
/// loop): 0.5 s, 1 s, 2 s … at most 10 s between attempts, each logged. Any other failure
/// (authentication, a wrong database name, a migration) ends the start at once. Until it
/// connects the service does not listen, which a load balancer reads as not ready.
async fn connect_postgres_patiently(
    url: &str,
    max_connections: u32,
) -> Result<EventLog, EventLogError> {
    let mut pause = Duration::from_millis(500);
    let mut attempts = 1u32;
    loop {
        match EventLog::connect_postgres(url, max_connections).await {
            Err(EventLogError::Database(error)) if unreachable(&error) => {
                tracing::warn!(
                    %error,
                    attempts,
                    retry_in_ms = pause.as_millis() as u64,
                    "PostgreSQL cannot be reached yet; waiting for it"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_CONNECT_PAUSE);
                attempts += 1;
            }
            connected => return connected,
        }
    }
}

/// A failure to reach the server, as opposed to one the server answered.
fn unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        // A server still starting up or shutting down says so (SQLSTATE 57P03, 57P01).
        sqlx::Error::Database(error) => {
            matches!(error.code().as_deref(), Some("57P03" | "57P01" | "57P02"))
        }
        _ => false,
    }
}

/// A shorter operator secret is refused at start: it could be guessed.
pub const MIN_OPS_TOKEN_CHARS: usize = 32;

/// The first operator token: the one named by `CUSTODY_OPS_TOKEN`, or, when there is no operator
/// token at all yet, a new one whose secret is returned to be shown once.
async fn bootstrap_operator(
    state: &AppState,
    configured: Option<&str>,
) -> Result<Option<String>, StartError> {
    let platform = state.commands.log().platform();
    if let Some(secret) = configured.filter(|s| !s.is_empty()) {
        if secret.chars().count() < MIN_OPS_TOKEN_CHARS {
            return Err(StartError::Bootstrap(format!(
                "CUSTODY_OPS_TOKEN must be at least {MIN_OPS_TOKEN_CHARS} characters"
            )));
        }
        if platform
            .token_by_secret_sm3(&secret_digest(secret))
            .await?
            .is_none()
        {
            crate::ops::store_token(state, "bootstrap-env", secret, Grant::first_operator())
                .await
                .map_err(|e| StartError::Bootstrap(e.to_string()))?;
        }
        return Ok(None);
    }
    if platform.has_operator_token().await? {
        return Ok(None);
    }
    let (_, secret) = crate::ops::issue(state, Grant::first_operator())
        .await
        .map_err(|e| StartError::Bootstrap(e.to_string()))?;
    Ok(Some(secret))
}

/// Forgets request ids long past the freshness window, every minute.
/// Keeps the planner's statistics of fast-growing tables current (issue 11;
/// `custody_eventlog::EventLog::refresh_statistics`).
fn spawn_statistics_keeper(state: &AppState, lease: Lease) {
    let log = state.commands.log().clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            // Analysing twice does no harm: the lease only saves the work.
            if lease.token().is_none() {
                continue;
            }
            match log.refresh_statistics().await {
                Ok(tables) if !tables.is_empty() => {
                    tracing::debug!(?tables, "refreshed the planner's statistics")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not refresh the planner's statistics"),
            }
        }
    });
}

fn spawn_request_id_sweeper(state: &AppState, lease: Lease) {
    let commands = state.commands.clone();
    let keep = (state.protocol.freshness * 2).max(Duration::from_secs(3600));
    tokio::spawn(async move {
        let mut every_minute = tokio::time::interval(Duration::from_secs(60));
        loop {
            every_minute.tick().await;
            // Idempotent deletes: the lease saves work, no fence is needed.
            if lease.token().is_none() {
                continue;
            }
            let before = commands.clock().now().timestamp_millis() - keep.as_millis() as i64;
            if let Err(error) = commands
                .log()
                .platform()
                .forget_requests_before(before)
                .await
            {
                tracing::warn!(%error, "could not sweep old request ids");
            }
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    #[error(transparent)]
    PlatformKey(#[from] PlatformKeyError),
    #[error("the master key: {0}")]
    MasterKey(#[from] custody_vault::VaultError),
    #[error("loading the sender registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("starting the projectors: {0}")]
    ReadSide(#[from] custody_projections::ProjectionError),
    #[error("starting the process managers: {0}")]
    Processes(#[from] custody_processes::ProcessError),
    #[error("the checkpoint witness: {0}")]
    Witness(#[from] crate::checkpointer::WitnessError),
    #[error("creating the first operator token: {0}")]
    Bootstrap(String),
    #[error("the rejection spool in {}: {source}", path.display())]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}
