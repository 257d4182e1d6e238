use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where a consent letter stands. `Unknown` until the unit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ConsentLetterState {
    #[default]
    Unknown,
    /// 已开具: issued by the unit; valid for 3 months from its issue date.
    Issued,
}
named_enum!(ConsentLetterState { Unknown, Issued });

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentLetterEventKind {
    LetterRecorded,
}
named_enum!(ConsentLetterEventKind { LetterRecorded });

use ConsentLetterEventKind as E;
use ConsentLetterState::*;

/// SPEC §3.3, the consent letter's state machine. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<ConsentLetterState, ConsentLetterEventKind>] = &[
    Rule { event: E::LetterRecorded, from: &[Unknown], to: Target::To(Issued) },
];
