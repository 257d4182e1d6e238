#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {path}: {source}")]
    DataDirectory {
        path: String,
        source: std::io::Error,
    },
    #[error("stored event is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
}
