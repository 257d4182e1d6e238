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
    #[error(
        "the data directory {path} is in use by another custody serve (it holds {path}/{lock}); \
         stop that one first, or give this one another --data-dir"
    )]
    DataDirectoryInUse { path: String, lock: &'static str },
    #[error("stored event is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("the event is not sealed by any checkpoint yet")]
    NotSealed,
    #[error("the stored Merkle tree is unreadable: {0}")]
    BadStoredTree(&'static str),
    #[error(transparent)]
    Proof(#[from] custody_audit::ProofError),
    #[error("signing the checkpoint: {0}")]
    Checkpoint(#[from] custody_audit::CheckpointError),
    #[error("personal data: {0}")]
    PersonalData(String),
    /// The person's data key is gone (erased) or was never made: their sealed fields stay sealed.
    #[error("the personal data of person {0} is erased")]
    PersonErased(String),
    #[error("the log holds sealed personal data but no master key was given")]
    NoMasterKey,
    #[error("backup: {0}")]
    Backup(String),
}
