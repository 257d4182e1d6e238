use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use custody_commands::{Clock, Commands, SystemClock};
use custody_eventlog::{EventLog, EventLogError};
use tokio::net::TcpListener;

use crate::config::{ServeConfig, StoreChoice};
use crate::health::health;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub commands: Arc<Commands>,
}

/// A built service, bound to its address but not yet serving.
pub struct App {
    listener: TcpListener,
    router: Router,
    pub state: AppState,
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
        let log = match &config.store {
            StoreChoice::Embedded => EventLog::open_embedded(&config.data_dir).await?,
            StoreChoice::Postgres { url } => {
                EventLog::connect_postgres(url, config.max_connections).await?
            }
        };
        let state = AppState {
            commands: Arc::new(Commands::new(log, clock)),
        };
        let router = Router::new()
            .route("/health", get(health))
            .with_state(state.clone());
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        Ok(App {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), std::io::Error> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    EventLog(#[from] EventLogError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}
