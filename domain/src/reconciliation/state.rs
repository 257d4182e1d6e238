use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where one cabinet's reconciliation of one business date stands. `Unknown` until its batch
/// has been diffed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ReconciliationState {
    #[default]
    Unknown,
    /// The deviations are recorded; the automatic repairs have not all been run yet.
    Diffed,
    /// The repairs have run and their outcome is recorded: the result is final.
    Reconciled,
}
named_enum!(ReconciliationState {
    Unknown,
    Diffed,
    Reconciled
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconciliationEventKind {
    BatchDiffed,
    RepairsRecorded,
}
named_enum!(ReconciliationEventKind {
    BatchDiffed,
    RepairsRecorded
});

use ReconciliationEventKind as E;
use ReconciliationState::*;

/// SPEC §6: one batch per cabinet and business date. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<ReconciliationState, ReconciliationEventKind>] = &[
    Rule { event: E::BatchDiffed,     from: &[Unknown], to: Target::To(Diffed) },
    Rule { event: E::RepairsRecorded, from: &[Diffed],  to: Target::To(Reconciled) },
];
