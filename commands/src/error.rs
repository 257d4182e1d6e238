use custody_domain::DomainError;
use custody_eventlog::EventLogError;

/// Why a command produced no event. The API maps each to the wire error table
/// (`custody_api::ErrorCode`), once; the store failures never reach a client as text.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// Other writers kept winning the race for this aggregate.
    #[error("gave up after {attempts} attempts: the aggregate kept changing underneath")]
    Conflict { attempts: u32 },
    /// The business serial was already used for a different aggregate.
    #[error("business serial {key} was already used for {aggregate_type} {aggregate_id}")]
    SerialReused {
        key: String,
        aggregate_type: String,
        aggregate_id: String,
    },
    /// The business serial was already used for this aggregate, with other business content:
    /// not a duplicate, and not to be dropped without a word.
    #[error("business serial {key} was already used for a report with other content")]
    ContentDiffers { key: String },
    /// The report would record personal data of a person whose data were erased: their data key
    /// is destroyed for good (docs/personal-data.md, "Erasure").
    #[error(
        "the personal data of person {person} were erased; nothing more is recorded about them"
    )]
    PersonErased { person: String },
    /// The event log failed (database down, a constraint the service does not expect).
    #[error("event store: {0}")]
    Store(#[from] EventLogError),
    /// cqrs-es's persistence failed while loading or committing.
    #[error("event store ({kind:?}): {source}")]
    Persistence {
        kind: PersistenceFailure,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Which part of cqrs-es's persistence failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistenceFailure {
    /// The database could not be reached.
    Connection,
    /// A stored event or its metadata did not decode.
    Deserialization,
    /// Anything else the repository reported.
    Unexpected,
}

impl CommandError {
    /// Whether this is the service's own failure (the sender may retry), not a refusal.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            CommandError::Store(_) | CommandError::Persistence { .. }
        )
    }
}
