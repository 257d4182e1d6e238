use custody_domain::DomainError;
use custody_eventlog::EventLogError;

/// Why a command produced no event. The API maps each to the wire error table
/// (`custody_api::ErrorCode`), once.
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
    #[error("event store: {0}")]
    Store(String),
}

impl From<EventLogError> for CommandError {
    fn from(error: EventLogError) -> Self {
        CommandError::Store(error.to_string())
    }
}
