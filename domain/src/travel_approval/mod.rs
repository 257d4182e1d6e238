//! The TravelApproval aggregate (出国（境）审批), id its `SP…` business serial: SPEC §3.3.
//!
//! An approval lets one person travel: it is valid from the approval date until the return date
//! plus 15 days. Its validity is a matter of dates, not of state: the platform checks it when a
//! lend (optype 21) names the approval.

mod aggregate;
mod commands;
mod events;
mod state;

pub use aggregate::TravelApproval;
pub use commands::TravelApprovalCommand;
pub use events::*;
pub use state::{TravelApprovalEventKind, TravelApprovalState, TRANSITIONS};
