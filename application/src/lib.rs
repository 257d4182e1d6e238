//! The application layer: one use case per intake (SPEC §5.1), each taking domain types and the
//! authenticated [`Principal`], asking the custody policy ([`custody`]) where the document or
//! person is and whether the sender may act on it, then running one command through
//! [`custody_commands::Commands`]. The HTTP edge (`api`) only reads wire fields into domain
//! types, calls one use case and writes the reply; it holds no business rule.
//!
//! - [`cabinet`]: activation, heartbeats, deposits and withdrawals, cancellations, alarms;
//! - [`unit`]: filing lists, their answers, travel approvals, consent letters;
//! - [`exit_entry`]: crossings, issued documents, filing answers;
//! - [`reconciliation`]: the cabinet's nightly batch, its diff and the one automatic repair;
//! - [`erasure`]: erasure by person, an operator's act.
//! - [`reseal`]: sealing a store written in clear, an operator's migration.

pub mod cabinet;
pub mod custody;
pub mod erasure;
mod error;
pub mod exit_entry;
mod intake;
pub mod keys;
pub mod reconciliation;
pub mod reseal;
pub mod unit;

use std::sync::Arc;

use custody_commands::Commands;
use custody_domain::reconciliation::ReconciliationWindow;

pub use error::ApplicationError;
pub use intake::{fingerprint, Intake, Principal};

/// The use cases over one event log.
#[derive(Clone)]
pub struct Application {
    commands: Arc<Commands>,
    /// When `sjsb-dzsj` is taken (see [`Application::with_reconciliation_window`]).
    reconciliation_window: ReconciliationWindow,
}

impl Application {
    pub fn new(commands: Arc<Commands>) -> Self {
        Application {
            commands,
            reconciliation_window: ReconciliationWindow::default(),
        }
    }

    pub fn commands(&self) -> &Arc<Commands> {
        &self.commands
    }
}
