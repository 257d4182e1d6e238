//! Custody's business model. Pure: no I/O and no framework types beyond the cqrs-es
//! `Aggregate` trait.
//!
//! Each aggregate lives in its own module with its commands, events and state machine; the state
//! machines are transition tables ([`transitions`]) that the code, the tests and
//! `docs/state-machines.md` all read.

pub mod business_time;
pub mod cabinet;
pub mod consent_letter;
pub mod custody;
pub mod document;
pub mod error;
pub mod history;
pub mod identifiers;
pub mod metadata;
pub mod person;
pub mod reconciliation;
pub mod reminder;
#[cfg(test)]
mod test_support;
pub mod transitions;
pub mod travel_approval;
pub mod values;

pub use error::DomainError;
pub use metadata::EventMetadata;
