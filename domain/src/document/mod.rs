//! The Document aggregate (证件), id ZJBS: SPEC §3.1.

mod aggregate;
mod commands;
mod events;
mod state;

pub use aggregate::Document;
pub use commands::{ApprovalCheck, DocumentCommand};
pub use events::*;
pub use state::{DocumentEventKind, DocumentState, TRANSITIONS};
