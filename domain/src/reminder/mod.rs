//! The Reminder aggregate (催收/催缴): SPEC §3.5, id `<zjbs>-<sequence>` (the document and the
//! sequence of its event that made it due back).
//!
//! A reminder opens when a lent document enters `AwaitingReturn`, because its return date passed
//! (`overdue`) or because its holder re-entered the country before it (`entered`). It is sent at
//! most N times a day, only between 10:00 and 17:00 China time, and closes when the document is
//! back in a cabinet or cancelled. The process manager that opens, sends and closes reminders is
//! in the `processes` crate; this module holds the rules.

mod aggregate;
mod commands;
mod events;
mod overdue;
mod state;

pub use aggregate::{within_sending_window, Reminder, SENDING_FROM, SENDING_UNTIL};
pub use commands::ReminderCommand;
pub use events::*;
pub use overdue::{china_date, is_overdue, overdue_days};
pub use state::{ReminderEventKind, ReminderState, TRANSITIONS};
