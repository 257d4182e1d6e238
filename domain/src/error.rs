//! The one error type of the domain. The application layer maps it, once, to the wire error
//! table.

use chrono::NaiveDate;

use crate::identifiers::IdentifierError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The aggregate's state machine does not allow this event now. Nothing is appended.
    #[error("{event} is not allowed for a {aggregate} in state {current}")]
    IllegalTransition {
        aggregate: &'static str,
        current: &'static str,
        event: &'static str,
    },
    #[error(transparent)]
    Identifier(#[from] IdentifierError),
    /// A field the rule needs is absent (e.g. the planned return date of a lend).
    #[error("missing field: {0}")]
    MissingField(&'static str),
    /// A value is present but outside what the rule allows.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// The return-date scheduler ran before the planned return date had passed.
    #[error("planned return date {planned_return} has not passed on {today}")]
    NotYetDue {
        planned_return: NaiveDate,
        today: NaiveDate,
    },
    /// A report named a cabinet body or drawer outside the enrolled geometry.
    #[error("no drawer row {row}, column {column} in cabinet body {body} of device {device}")]
    NoSuchDrawer {
        device: String,
        body: String,
        row: u16,
        column: u16,
    },
    /// A business time lies further ahead of the server clock than the allowed skew
    /// (docs/protocol.md, "Time rules").
    #[error("{field} {at} is ahead of the server clock ({now}) by more than {skew_secs} s")]
    AheadOfClock {
        field: &'static str,
        at: String,
        now: String,
        skew_secs: i64,
    },
    /// A cabinet operation earlier than the document's latest recorded one: its history must
    /// stay in business-time order (docs/protocol.md, "Time rules").
    #[error("{field} {at} is before the document's latest operation at {latest}")]
    OutOfOrder {
        field: &'static str,
        at: String,
        latest: String,
    },
}
