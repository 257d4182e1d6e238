use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where a travel approval stands. `Unknown` until the unit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum TravelApprovalState {
    #[default]
    Unknown,
    /// 已审批: recorded as the unit approved it; valid on the days its dates allow.
    Approved,
}
named_enum!(TravelApprovalState { Unknown, Approved });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TravelApprovalEventKind {
    ApprovalRecorded,
}
named_enum!(TravelApprovalEventKind { ApprovalRecorded });

use TravelApprovalEventKind as E;
use TravelApprovalState::*;

/// SPEC §3.3, the travel approval's state machine. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<TravelApprovalState, TravelApprovalEventKind>] = &[
    Rule { event: E::ApprovalRecorded, from: &[Unknown], to: Target::To(Approved) },
];
