//! The Cabinet aggregate (证件保管柜), id the device serial SBXLH: SPEC §3.4.

mod aggregate;
mod commands;
mod events;
mod state;

pub use aggregate::Cabinet;
pub use commands::CabinetCommand;
pub use events::*;
pub use state::{CabinetEventKind, CabinetState, TRANSITIONS};
