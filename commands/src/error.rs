use custody_domain::DomainError;
use custody_eventlog::EventLogError;

/// Why a command produced no event. `code()` is the stable wire error code
/// (docs/protocol.md); the HTTP layer maps codes to statuses in one place.
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

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Domain(error) => match error {
                DomainError::IllegalTransition { .. } => "E_ILLEGAL_TRANSITION",
                DomainError::Identifier(_) | DomainError::InvalidField { .. } => "E_INVALID_FIELD",
                DomainError::MissingField(_) => "E_MISSING_FIELD",
                DomainError::NotYetDue { .. } => "E_NOT_YET_DUE",
                DomainError::NoSuchDrawer { .. } => "E_NO_SUCH_DRAWER",
            },
            CommandError::Conflict { .. } => "E_CONFLICT",
            CommandError::SerialReused { .. } => "E_SERIAL_REUSED",
            CommandError::Store(_) => "E_INTERNAL",
        }
    }
}
