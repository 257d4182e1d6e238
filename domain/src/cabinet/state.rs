use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum CabinetState {
    #[default]
    Unknown,
    /// Enrolled by an operator; not yet heard from.
    Enrolled,
    /// Activated by its own signed initialisation message.
    Active,
    /// Refused from now on.
    Disabled,
}
named_enum!(CabinetState {
    Unknown,
    Enrolled,
    Active,
    Disabled
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CabinetEventKind {
    Enrolled,
    Activated,
    Disabled,
    AlarmRaised,
}
named_enum!(CabinetEventKind {
    Enrolled,
    Activated,
    Disabled,
    AlarmRaised
});

use CabinetEventKind as E;
use CabinetState::*;

/// SPEC §3.4. A device may initialise again (after a restart or a change of administrators);
/// alarms are only taken from an active device.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<CabinetState, CabinetEventKind>] = &[
    Rule { event: E::Enrolled,    from: &[Unknown],          to: Target::To(Enrolled) },
    Rule { event: E::Activated,   from: &[Enrolled, Active], to: Target::To(Active) },
    Rule { event: E::Disabled,    from: &[Enrolled, Active], to: Target::To(Disabled) },
    Rule { event: E::AlarmRaised, from: &[Active],           to: Target::Same },
];
