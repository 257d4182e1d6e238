use super::events::*;
use crate::cabinet::Administrator;
use crate::values::Timestamp;

/// A request to change a reminder; each yields at most one event. Only the platform's reminder
/// process issues them.
#[derive(Debug, Clone, PartialEq)]
pub enum ReminderCommand {
    Open(Opened),
    /// Issue one reminder now, if the sending window and the daily limit allow it.
    Send {
        at: Timestamp,
        /// How many reminders a day are allowed (configuration; at least 1).
        per_day: u32,
        recipients: Vec<Administrator>,
    },
    Close(Closed),
}
