use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where a reminder stands. `Unknown` until it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ReminderState {
    #[default]
    Unknown,
    /// 待催收: opened, not sent yet.
    Pending,
    /// 催收中: sent at least once.
    Reminding,
    /// 催收结束 (terminal): the document was deposited or cancelled.
    Closed,
}
named_enum!(ReminderState {
    Unknown,
    Pending,
    Reminding,
    Closed
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReminderEventKind {
    Opened,
    Sent,
    Closed,
}
named_enum!(ReminderEventKind {
    Opened,
    Sent,
    Closed
});

use ReminderEventKind as E;
use ReminderState::*;

/// SPEC §3.5, the reminder's lifecycle. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<ReminderState, ReminderEventKind>] = &[
    Rule { event: E::Opened, from: &[Unknown],            to: Target::To(Pending) },
    Rule { event: E::Sent,   from: &[Pending, Reminding], to: Target::To(Reminding) },
    Rule { event: E::Closed, from: &[Pending, Reminding], to: Target::To(ReminderState::Closed) },
];
