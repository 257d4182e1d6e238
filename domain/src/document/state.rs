use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where a document is in its life. `Unknown` until its first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum DocumentState {
    #[default]
    Unknown,
    /// 办证中
    Applying,
    /// 已入柜
    InCabinet,
    /// 已取证: out, before its return date
    Withdrawn,
    /// 等待入柜: out and due back, or issued and not yet deposited
    AwaitingReturn,
    /// 已注销 (terminal)
    Cancelled,
}
named_enum!(DocumentState {
    Unknown,
    Applying,
    InCabinet,
    Withdrawn,
    AwaitingReturn,
    Cancelled
});

/// The kinds of document event, as the transition table tells them apart. A border crossing is
/// two kinds because exit and entry lead to different states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentEventKind {
    ApplicationFiled,
    IssuanceConfirmed,
    Deposited,
    Withdrawn,
    AbnormalWithdrawal,
    BorderCrossedExit,
    BorderCrossedEntry,
    ReturnDateReached,
    Cancelled,
    ReconciliationCorrected,
}
named_enum!(DocumentEventKind {
    ApplicationFiled,
    IssuanceConfirmed,
    Deposited,
    Withdrawn,
    AbnormalWithdrawal,
    BorderCrossedExit,
    BorderCrossedEntry,
    ReturnDateReached,
    Cancelled,
    ReconciliationCorrected,
});

use DocumentEventKind as E;
use DocumentState::*;

/// SPEC §3.1, the document's state machine. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<DocumentState, DocumentEventKind>] = &[
    Rule { event: E::ApplicationFiled, from: &[Unknown], to: Target::To(Applying) },
    Rule { event: E::IssuanceConfirmed, from: &[Unknown, Applying], to: Target::To(AwaitingReturn) },
    Rule {
        event: E::Deposited,
        from: &[Unknown, AwaitingReturn, Withdrawn, Applying],
        to: Target::To(InCabinet),
    },
    Rule { event: E::Withdrawn, from: &[InCabinet], to: Target::To(DocumentState::Withdrawn) },
    Rule { event: E::AbnormalWithdrawal, from: &[InCabinet], to: Target::To(DocumentState::Withdrawn) },
    // The exit-entry administration is the authority on crossings: every one is recorded.
    Rule {
        event: E::BorderCrossedExit,
        from: &[Unknown, Applying, InCabinet, Withdrawn, AwaitingReturn, Cancelled],
        to: Target::Same,
    },
    Rule { event: E::BorderCrossedEntry, from: &[Withdrawn], to: Target::To(AwaitingReturn) },
    Rule {
        event: E::BorderCrossedEntry,
        from: &[Unknown, Applying, InCabinet, AwaitingReturn, Cancelled],
        to: Target::Same,
    },
    Rule { event: E::ReturnDateReached, from: &[Withdrawn], to: Target::To(AwaitingReturn) },
    Rule {
        event: E::Cancelled,
        from: &[Unknown, Applying, InCabinet, Withdrawn, AwaitingReturn],
        to: Target::To(DocumentState::Cancelled),
    },
    Rule {
        event: E::ReconciliationCorrected,
        from: &[Withdrawn, AwaitingReturn],
        to: Target::To(InCabinet),
    },
];
