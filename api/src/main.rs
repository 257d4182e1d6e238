//! `custody`: the Custody service and its command-line tools.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use custody_api::{App, ServeConfig, StoreChoice};

#[derive(Parser)]
#[command(
    name = "custody",
    version,
    about = "Custody: the legal record of where every private travel document of a state employee is"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service. With no options: the embedded event store under ./data, on 127.0.0.1:8080.
    Serve(ServeArgs),
    /// Simulated cabinets: send signed reports to a running service, or drive it with load.
    Simulate(custody_api::simulate::SimulateArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = ServeConfig::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Directory of the embedded store and the platform's keys.
    #[arg(long, default_value = ServeConfig::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Use PostgreSQL (postgres://…) as the event store instead of the embedded one.
    #[arg(long, env = "CUSTODY_DATABASE_URL")]
    database_url: Option<String>,
    /// Connections to PostgreSQL.
    #[arg(long, default_value_t = 32)]
    max_connections: u32,
    /// The platform's SM2 encryption key (PKCS#8 PEM; its certificate beside it as *.cert.pem).
    /// Generated in the data directory when not given.
    #[arg(long)]
    platform_key: Option<PathBuf>,
    /// Refuse requests that carry no gateway signature (s.rsig).
    #[arg(long)]
    require_gateway_signature: bool,
    /// Admitted requests per second per sender (token bucket; the burst is twice this).
    #[arg(long, default_value_t = 50.0)]
    sender_rate: f64,
    /// Admitted requests per second in all (token bucket; the burst equals this).
    #[arg(long, default_value_t = 5000.0)]
    global_rate: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
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
                config.platform_key = args.platform_key;
                config.ops_token = std::env::var("CUSTODY_OPS_TOKEN").ok();
                config.protocol.require_gateway_signature = args.require_gateway_signature;
                config.admission.per_sender_rate = args.sender_rate;
                config.admission.per_sender_burst = args.sender_rate * 2.0;
                config.admission.global_rate = args.global_rate;
                config.admission.global_burst = args.global_rate;
                serve(config).await
            }
            Command::Simulate(args) => custody_api::simulate::run(args).await,
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

async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let app = App::build(&config).await?;
    if let Some(secret) = &app.first_operator_token {
        // Shown once: only its SM3 is stored.
        println!("custody: first operator token (shown once, keep it): {secret}");
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
