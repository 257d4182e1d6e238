use std::net::SocketAddr;
use std::path::PathBuf;

/// Which event store to run on; chosen once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store `custody.db` in the data directory.
    Embedded,
    /// PostgreSQL at this URL.
    Postgres { url: String },
}

/// What `custody serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreChoice,
    /// Connections to PostgreSQL; ignored for the embedded store.
    pub max_connections: u32,
}

impl ServeConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_DATA_DIR: &'static str = "./data";
}
