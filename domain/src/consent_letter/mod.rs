//! The ConsentLetter aggregate (同意函), id its `TY…` business serial: SPEC §3.3.
//!
//! A consent letter lets one person apply for a new document, a renewal or an endorsement; it is
//! valid for 3 months from the day it was issued.

mod aggregate;
mod commands;
mod events;
mod state;

pub use aggregate::ConsentLetter;
pub use commands::ConsentLetterCommand;
pub use events::*;
pub use state::{ConsentLetterEventKind, ConsentLetterState, TRANSITIONS};
