use custody_commands::CommandError;
use custody_domain::identifiers::CreditCode;
use custody_domain::DomainError;
use custody_eventlog::EventLogError;

/// Why a use case refused or failed. The edge maps each to the wire error table once.
#[derive(Debug, thiserror::Error)]
pub enum ApplicationError {
    /// The command itself was refused (state machine, serial reuse) or the store failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The report names another device or unit than the one that signed it.
    #[error("{0}")]
    SenderMismatch(String),
    /// The custody policy refused: the sender may not act on this document or person
    /// (docs/custody.md). `custodian` is the unit whose document or person it is.
    #[error("{message}")]
    NotCustodian {
        message: String,
        custodian: Option<CreditCode>,
    },
    /// A field is present but does not fit the business rule.
    #[error("{field}: {reason}")]
    InvalidField { field: String, reason: String },
    /// Nothing of that name is visible to this sender.
    #[error("{0}")]
    NotFound(String),
    /// The person cannot be erased yet (a document of theirs is still in custody).
    #[error("{0}")]
    NotErasable(String),
    /// A look-up behind a port failed (the service's own failure).
    #[error("look-up: {0}")]
    Lookup(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A reconciliation batch outside its window.
    #[error("{0}")]
    OutsideWindow(String),
}

impl ApplicationError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        ApplicationError::InvalidField {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether this is the service's own failure rather than a refusal.
    pub fn is_internal(&self) -> bool {
        matches!(self, ApplicationError::Command(error) if error.is_internal())
            || matches!(self, ApplicationError::Lookup(_))
    }
}

impl From<DomainError> for ApplicationError {
    fn from(error: DomainError) -> Self {
        ApplicationError::Command(CommandError::Domain(error))
    }
}

impl From<EventLogError> for ApplicationError {
    fn from(error: EventLogError) -> Self {
        ApplicationError::Command(CommandError::Store(error))
    }
}
