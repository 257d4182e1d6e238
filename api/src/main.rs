//! `custody`: the Custody service and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use custody_api::{App, ServeConfig, StoreChoice};

#[derive(Parser)]
#[command(
    name = "custody",
    version,
    about = "Custody: the legal record of where every private travel document of a state employee is"
)]
struct Cli {
    /// How log lines are written to standard output: `text` for people, `json` (one object per
    /// line) for a log collector. RUST_LOG chooses what is logged (default `info`).
    #[arg(long, global = true, env = "CUSTODY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the service. With no options: the embedded event store under ./data, on 127.0.0.1:8080.
    Serve(ServeArgs),
    /// Simulated cabinets: send signed reports to a running service, or drive it with load.
    Simulate(custody_simulator::SimulateArgs),
    /// Projections of a running service: status, rebuild.
    #[command(subcommand)]
    Projections(custody_api::client::ProjectionsCommand),
    /// Audit a running service's event log.
    #[command(subcommand)]
    Audit(custody_api::client::AuditCommand),
    /// Take a consistent backup of the store while the service runs (docs/operations.md).
    Backup(BackupArgs),
    /// Restore a backup into an empty store and verify it before it is used.
    Restore(RestoreArgs),
    /// The keys of personal data at rest (docs/personal-data.md).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The service's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the manual page (roff; `custody man | man -l -`).
    Man,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the configuration `serve` would run with (flags over environment over the
    /// `--config` file over defaults), secrets masked; refuses a file with an unknown key.
    Check(ServeArgs),
}

#[derive(clap::Args)]
struct StoreArgs {
    /// Directory of the embedded store and the platform's keys.
    #[arg(long, env = "CUSTODY_DATA_DIR", default_value = ServeConfig::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The PostgreSQL store (postgres://…) instead of the embedded one.
    #[arg(long, env = "CUSTODY_DATABASE_URL")]
    database_url: Option<String>,
}

impl StoreArgs {
    fn choice(&self) -> StoreChoice {
        match &self.database_url {
            Some(url) => StoreChoice::Postgres { url: url.clone() },
            None => StoreChoice::Embedded,
        }
    }
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wrap every data key still wrapped under --previous-master-key with --master-key,
    /// online, with progress; then the previous key file can be destroyed.
    Rewrap(RewrapArgs),
    /// Rotate the blind-index key, online, with progress: a new index key becomes current,
    /// every view row is re-indexed under it, then the previous one is destroyed.
    RotateIndex(RotateIndexArgs),
    /// Seal the personal data of a store written in clear, in place and offline (stop the
    /// service first), with progress: every event is resealed and the run recorded by an event
    /// of its own, the views are rebuilt sealed, and the store is compacted. Resumable: run it
    /// again after an interruption; a second run does nothing.
    SealPlaintext(SealPlaintextArgs),
}

#[derive(clap::Args)]
struct SealPlaintextArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The master key file; default DATA_DIR/master.key (generated if absent).
    #[arg(long, env = "CUSTODY_MASTER_KEY")]
    master_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct RotateIndexArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The master key file; default DATA_DIR/master.key.
    #[arg(long, env = "CUSTODY_MASTER_KEY")]
    master_key: Option<PathBuf>,
    /// How long running instances may keep using the old index key from memory before they
    /// read the new one (their key cache's lifetime, 30 s); the old key is looked up until the
    /// end, so nothing is missed meanwhile.
    #[arg(long, default_value_t = 31)]
    wait_secs: u64,
}

#[derive(clap::Args)]
struct RewrapArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The new master key file (generated if absent); default DATA_DIR/master.key.
    #[arg(long, env = "CUSTODY_MASTER_KEY")]
    master_key: Option<PathBuf>,
    /// The master key file being rotated away from.
    #[arg(long, env = "CUSTODY_PREVIOUS_MASTER_KEY")]
    previous_master_key: PathBuf,
}

#[derive(clap::Args)]
struct BackupArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The directory to write the backup into (created; must be empty).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct RestoreArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The backup directory (`custody backup --out`).
    #[arg(long)]
    from: PathBuf,
    /// The checkpoint public key (SubjectPublicKeyInfo PEM) to verify with, held apart from the
    /// backup; else the data directory's signing key, else the backup's own copy.
    #[arg(long)]
    checkpoint_key: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// A TOML file of these options (keys as the long option names); flags and environment
    /// variables win over it. `custody config check` shows what takes effect.
    #[arg(long, env = "CUSTODY_CONFIG")]
    config: Option<PathBuf>,
    /// The first operator token's secret (at least 32 characters); see docs/operations.md.
    #[arg(long, env = "CUSTODY_OPS_TOKEN", hide_env_values = true)]
    ops_token: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CUSTODY_LISTEN", default_value = ServeConfig::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory of the embedded store and the platform's keys.
    #[arg(long, env = "CUSTODY_DATA_DIR", default_value = ServeConfig::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Use PostgreSQL (postgres://…) as the event store instead of the embedded one.
    #[arg(long, env = "CUSTODY_DATABASE_URL")]
    database_url: Option<String>,
    /// Connections to PostgreSQL.
    #[arg(long, env = "CUSTODY_MAX_CONNECTIONS", default_value_t = 32)]
    max_connections: u32,
    /// The platform's SM2 encryption key (PKCS#8 PEM; its certificate beside it as *.cert.pem).
    /// Generated in the data directory when not given.
    #[arg(long, env = "CUSTODY_PLATFORM_KEY")]
    platform_key: Option<PathBuf>,
    /// The SM2 key that signs the log's checkpoints (PKCS#8 PEM). Generated in the data
    /// directory (checkpoint-sign.key.pem) when not given.
    #[arg(long, env = "CUSTODY_CHECKPOINT_KEY")]
    checkpoint_key: Option<PathBuf>,
    /// The master key file that wraps every person's data key (hex, mode 0600;
    /// docs/personal-data.md). Keep it off the database's machine and out of its backups.
    /// Generated in the data directory (master.key) when not given.
    #[arg(long, env = "CUSTODY_MASTER_KEY")]
    master_key: Option<PathBuf>,
    /// During a rotation of the master key: the previous key file, under which data keys not
    /// yet re-wrapped (`custody keys rewrap`) still open.
    #[arg(long, env = "CUSTODY_PREVIOUS_MASTER_KEY")]
    previous_master_key: Option<PathBuf>,
    /// Append each new checkpoint to this file (JSON lines): a witness outside the database.
    #[arg(long, env = "CUSTODY_CHECKPOINT_WITNESS")]
    checkpoint_witness: Option<PathBuf>,
    /// Seconds between checkpoints of the log, made only when it grew.
    #[arg(long, env = "CUSTODY_CHECKPOINT_INTERVAL", default_value_t = ServeConfig::DEFAULT_CHECKPOINT_INTERVAL_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_interval: u64,
    /// Feed the projectors through NATS JetStream (nats://…) instead of reading the store.
    /// Several servers of one cluster are named comma-separated (nats://a:4222,nats://b:4222).
    #[arg(long, env = "CUSTODY_NATS_URL")]
    nats_url: Option<String>,
    /// Copies of the JetStream stream: 3 in a three-node cluster, so losing any one node loses
    /// nothing; 1 for a single nats-server. Applied when the stream is created.
    #[arg(long, env = "CUSTODY_NATS_REPLICAS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=5))]
    nats_replicas: u16,
    /// Refuse requests that carry no gateway signature (s.rsig).
    #[arg(long, env = "CUSTODY_REQUIRE_GATEWAY_SIGNATURE")]
    require_gateway_signature: bool,
    /// Admitted requests per second per sender (token bucket; the burst is twice this).
    #[arg(long, env = "CUSTODY_SENDER_RATE", default_value_t = 50.0)]
    sender_rate: f64,
    /// Admitted requests per second in all (token bucket; the burst equals this).
    #[arg(long, env = "CUSTODY_GLOBAL_RATE", default_value_t = 5000.0)]
    global_rate: f64,
    /// Days a refused report is kept in the rejected-reports log.
    #[arg(long, env = "CUSTODY_REJECTION_RETENTION_DAYS",
          default_value_t = custody_api::wire::rejection_quota::RejectionLogConfig::DEFAULT_RETENTION_DAYS)]
    rejection_retention_days: u64,
    /// Unauthenticated refusals kept per source address a minute; beyond it they are counted.
    #[arg(
        long,
        env = "CUSTODY_UNAUTHENTICATED_REJECTIONS_PER_MINUTE",
        default_value_t = 60
    )]
    unauthenticated_rejections_per_minute: u32,
    /// Where reminders are POSTed (JSON, header Idempotency-Key), retried until answered 2xx.
    /// Without it reminders stay queued (GET /api/v1/ops/notifications).
    #[arg(long, env = "CUSTODY_REMINDER_WEBHOOK_URL")]
    reminder_webhook_url: Option<String>,
    /// Reminders sent per overdue document and day, at most (between 10:00 and 17:00 China time).
    #[arg(long, env = "CUSTODY_REMINDERS_PER_DAY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=24))]
    reminders_per_day: u32,
    /// Seconds between runs of the return-date scheduler and the reminders (at most an hour).
    #[arg(long, env = "CUSTODY_SCHEDULER_INTERVAL", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=3600))]
    scheduler_interval: u64,
    /// When cabinets may upload the nightly reconciliation batch, China time (`HH:MM-HH:MM`;
    /// the end is excluded, and a window may run past midnight).
    #[arg(
        long,
        env = "CUSTODY_RECONCILIATION_WINDOW",
        default_value = "20:00-06:00"
    )]
    reconciliation_window: custody_domain::reconciliation::ReconciliationWindow,
    /// This instance's name when several serve one PostgreSQL database: the holder shown for
    /// the background workers it runs (GET /api/v1/ops/workers). Default: host name and port.
    #[arg(long, env = "CUSTODY_INSTANCE_ID")]
    instance_id: Option<String>,
}

/// mimalloc rather than glibc's malloc: under load the service allocates and frees many small
/// short-lived buffers (JSON, rows, envelopes) from many threads, where glibc spent a fifth of
/// its CPU (docs/benchmarks.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let command = Cli::command();
    let parsed = match custody_api::config_file::parse_with_file(
        command.clone(),
        std::env::args_os().collect(),
    ) {
        Ok(parsed) => parsed,
        Err(custody_api::config_file::ConfigFileError::Clap(error)) => error.exit(),
        Err(error) => {
            eprintln!("custody: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cli = match Cli::from_arg_matches(&parsed.matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // The commands that only print need no logs and no runtime.
    match &cli.command {
        Command::Config(ConfigCommand::Check(_)) => {
            println!("{}", custody_api::config_file::effective(&command, &parsed));
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "custody",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("custody: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("custody: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let mut config = ServeConfig::embedded(args.listen, args.data_dir);
                if let Some(url) = args.database_url {
                    config.store = StoreChoice::Postgres { url };
                }
                config.max_connections = args.max_connections;
                if let Some(url) = args.nats_url {
                    config.transport = custody_api::Transport::JetStream {
                        url,
                        settings: custody_projections::feed::StreamSettings {
                            replicas: usize::from(args.nats_replicas),
                            ..Default::default()
                        },
                    };
                }
                config.platform_key = args.platform_key;
                config.checkpoint_key = args.checkpoint_key;
                config.master_key = args.master_key;
                config.previous_master_key = args.previous_master_key;
                config.checkpoint_witness = args.checkpoint_witness;
                config.checkpoint_interval =
                    std::time::Duration::from_secs(args.checkpoint_interval);
                config.ops_token = args.ops_token;
                config.protocol.require_gateway_signature = args.require_gateway_signature;
                config.admission.per_sender_rate = args.sender_rate;
                config.admission.per_sender_burst = args.sender_rate * 2.0;
                config.admission.global_rate = args.global_rate;
                config.admission.global_burst = args.global_rate;
                config.rejection_log.retention =
                    std::time::Duration::from_secs(args.rejection_retention_days * 86_400);
                config.rejection_log.per_source_per_minute =
                    args.unauthenticated_rejections_per_minute;
                config.processes.webhook = args
                    .reminder_webhook_url
                    .filter(|url| !url.is_empty())
                    .map(custody_processes::WebhookConfig::new);
                config.processes.reminders_per_day = args.reminders_per_day;
                config.processes.tick_interval =
                    std::time::Duration::from_secs(args.scheduler_interval);
                config.reconciliation_window = args.reconciliation_window;
                config.instance_id = args.instance_id.filter(|id| !id.is_empty());
                serve(config).await
            }
            Command::Simulate(args) => custody_simulator::run(args).await,
            Command::Projections(command) => custody_api::client::projections(command).await,
            Command::Audit(command) => custody_api::client::audit(command).await,
            Command::Backup(args) => backup(args).await,
            Command::Keys(KeysCommand::Rewrap(args)) => rewrap(args).await,
            Command::Keys(KeysCommand::RotateIndex(args)) => rotate_index(args).await,
            Command::Keys(KeysCommand::SealPlaintext(args)) => seal_plaintext(args).await,
            Command::Restore(args) => restore(args).await,
            Command::Config(ConfigCommand::Check(_))
            | Command::Completions { .. }
            | Command::Man => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("custody: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn backup(args: BackupArgs) -> Result<(), Box<dyn std::error::Error>> {
    let store = args.store.choice();
    let log = match &store {
        StoreChoice::Embedded => {
            custody_eventlog::EventLog::open_embedded(&args.store.data_dir).await?
        }
        StoreChoice::Postgres { url } => {
            custody_eventlog::EventLog::connect_postgres(url, 2).await?
        }
    };
    let key = custody_api::backup::checkpoint_public_key(&args.store.data_dir)?;
    let manifest = custody_api::backup::backup(&log, &store, key.as_deref(), &args.out).await?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    eprintln!(
        "custody: backup written to {}; the master key, platform key and checkpoint signing key \
         are not in it: keep them apart",
        args.out.display()
    );
    Ok(())
}

/// The store a key command works on, with its personal data opened by `master`.
async fn open_with_master(
    store: &StoreArgs,
    master: custody_vault::MasterKeys,
) -> Result<custody_eventlog::EventLog, custody_eventlog::EventLogError> {
    let log = match store.choice() {
        StoreChoice::Embedded => custody_eventlog::EventLog::open_embedded(&store.data_dir).await?,
        StoreChoice::Postgres { url } => {
            custody_eventlog::EventLog::connect_postgres(&url, 2).await?
        }
    };
    Ok(log.with_personal_data(std::sync::Arc::new(master)))
}

async fn rewrap(args: RewrapArgs) -> Result<(), Box<dyn std::error::Error>> {
    let master = custody_api::master_key::load(
        &args.store.data_dir,
        args.master_key.as_deref(),
        Some(&args.previous_master_key),
    )?;
    let log = open_with_master(&args.store, master).await?;
    let done = custody_api::master_key::rewrap_with_progress(&log).await?;
    eprintln!(
        "custody: {done} data keys re-wrapped; restart the service without \
         --previous-master-key, then destroy {}",
        args.previous_master_key.display()
    );
    Ok(())
}

async fn rotate_index(args: RotateIndexArgs) -> Result<(), Box<dyn std::error::Error>> {
    let master =
        custody_api::master_key::load(&args.store.data_dir, args.master_key.as_deref(), None)?;
    let log = open_with_master(&args.store, master).await?;
    let (key, done) = custody_api::master_key::rotate_index_with_progress(
        &log,
        std::time::Duration::from_secs(args.wait_secs),
    )
    .await?;
    eprintln!("custody: the blind-index key is now {key}; {done} view rows re-indexed");
    Ok(())
}

async fn seal_plaintext(args: SealPlaintextArgs) -> Result<(), Box<dyn std::error::Error>> {
    // The embedded store's own lock: refused while a serve holds it.
    let _data_directory = match args.store.choice() {
        StoreChoice::Embedded => Some(custody_eventlog::files::lock_data_directory(
            &args.store.data_dir,
        )?),
        StoreChoice::Postgres { .. } => None,
    };
    let master =
        custody_api::master_key::load(&args.store.data_dir, args.master_key.as_deref(), None)?;
    let log = open_with_master(&args.store, master).await?;
    let sealed = custody_api::master_key::seal_plaintext_with_progress(&log).await?;
    match &sealed.outcome.record {
        Some(record) => eprintln!(
            "custody: run {} resealed {} events ({} now), recorded with entries SM3 {}; views              rebuilt: {}. Start the service: its next checkpoint covers the record.",
            record.run,
            record.events,
            sealed.outcome.resealed,
            record.entries_sm3,
            sealed.views_rebuilt.join(", ")
        ),
        None => eprintln!("custody: no personal data in clear: nothing resealed or recorded"),
    }
    Ok(())
}

async fn restore(args: RestoreArgs) -> Result<(), Box<dyn std::error::Error>> {
    let restored = custody_api::backup::restore(
        &args.from,
        &args.store.choice(),
        &args.store.data_dir,
        args.checkpoint_key.as_deref(),
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&restored)?);
    if restored.verdict.verified {
        Ok(())
    } else {
        Err("the restored log does not verify: it was not put in place".into())
    }
}

async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let app = App::build(&config).await?;
    if let Some(secret) = &app.first_operator_token {
        // Shown once, on standard error apart from the logs: only its SM3 is stored. The
        // listener is already bound, so a start that fails cannot have made it unseen.
        eprintln!("custody: first operator token (shown once, keep it): {secret}");
    }
    tracing::info!(
        address = %app.local_addr()?,
        store = app.state.commands.log().backend_name(),
        "custody serving"
    );
    app.serve(shutdown_signal()).await?;
    Ok(())
}

/// Ctrl-C or SIGTERM: stop taking connections and finish what is in flight.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
