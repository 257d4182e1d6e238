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
    /// Another instance took the worker's lease since this one took it (docs/scaling.md).
    #[error("lease {lease} was taken by another instance since token {token}; not writing")]
    Fenced { lease: String, token: i64 },
    #[error("signing the checkpoint: {0}")]
    Checkpoint(#[from] custody_audit::CheckpointError),
    #[error("personal data: {0}")]
    PersonalData(String),
    /// The person's data key is gone (erased) or was never made: their sealed fields stay sealed.
    #[error("the personal data of person {0} is erased")]
    PersonErased(String),
    #[error("the log holds sealed personal data but no master key was given")]
    NoMasterKey,
    #[error(
        "the store's data keys are wrapped by master key {stored}, and the key given is {given}: \
         give every instance the same --master-key (during a rotation, the old one as \
         --previous-master-key)"
    )]
    ForeignMasterKey { stored: String, given: String },
    #[error("backup: {0}")]
    Backup(String),
}
