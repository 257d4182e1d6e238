//! The Reconciliation aggregate (对账), id `<sbxlh>:<dzrq>`: SPEC §6.
//!
//! One per cabinet and business date. The nightly batch (`sjsb-dzsj`) is diffed against the
//! platform's state at the end of that date; the diff is recorded first ([`BatchDiffed`]), the
//! one automatic repair of SPEC §6.1 is then run on each document it names, and the outcome of
//! those repairs closes the reconciliation ([`RepairsRecorded`]). Recording the diff before any
//! repair makes a second, different batch for the same cabinet and date impossible to apply
//! halfway, and lets a re-sent batch finish from the stored diff instead of a recomputed one.

mod aggregate;
mod commands;
mod diff;
mod events;
mod state;
mod window;

pub use aggregate::Reconciliation;
pub use commands::ReconciliationCommand;
pub use diff::{
    compare, effective_time, log_deviations, replay_until, CabinetClaim, LoggedOperation,
    PlatformOperation, ReportedDocument,
};
pub use events::*;
pub use state::{ReconciliationEventKind, ReconciliationState, TRANSITIONS};
pub use window::{
    end_of_business_date, start_of_business_date, ReconciliationWindow, WindowParseError,
};
