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
    Serve {
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
    },
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
            Command::Serve {
                listen,
                data_dir,
                database_url,
                max_connections,
            } => {
                let config = ServeConfig {
                    listen,
                    data_dir,
                    store: match database_url {
                        Some(url) => StoreChoice::Postgres { url },
                        None => StoreChoice::Embedded,
                    },
                    max_connections,
                };
                serve(config).await
            }
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
