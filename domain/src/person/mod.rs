//! The Person aggregate (报备人员), id RYBS: SPEC §3.2.

mod aggregate;
mod commands;
mod events;
mod state;

pub use aggregate::Person;
pub use commands::PersonCommand;
pub use events::*;
pub use state::{PersonEventKind, PersonState, TRANSITIONS};
