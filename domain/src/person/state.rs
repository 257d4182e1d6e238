use serde::{Deserialize, Serialize};

use crate::named_enum;
use crate::transitions::{Rule, Target};

/// Where a person's filing (登记备案) stands. `Unknown` until the first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum PersonState {
    #[default]
    Unknown,
    /// 报备中
    Filing,
    /// 已报备
    Filed,
    /// 报备变更中
    Changing,
    /// 报备撤销中
    Revoking,
    /// 报备已注销 (terminal)
    Revoked,
    /// The exit-entry administration refused the filing.
    Rejected,
    /// The person's personal data were erased (terminal): the history stays, its contents are
    /// unreadable.
    Erased,
}
named_enum!(PersonState {
    Unknown,
    Filing,
    Filed,
    Changing,
    Revoking,
    Revoked,
    Rejected,
    Erased
});

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PersonEventKind {
    FilingSubmitted,
    FilingAccepted,
    FilingRefused,
    ChangeSubmitted,
    ChangeAccepted,
    ChangeRefused,
    RevocationSubmitted,
    RevocationAccepted,
    RevocationRefused,
    PersonalDataErased,
}
named_enum!(PersonEventKind {
    FilingSubmitted,
    FilingAccepted,
    FilingRefused,
    ChangeSubmitted,
    ChangeAccepted,
    ChangeRefused,
    RevocationSubmitted,
    RevocationAccepted,
    RevocationRefused,
    PersonalDataErased,
});

use PersonEventKind as E;
use PersonState::*;

/// SPEC §3.2, the person's state machine. docs/state-machines.md prints this table.
#[rustfmt::skip]
pub const TRANSITIONS: &[Rule<PersonState, PersonEventKind>] = &[
    Rule { event: E::FilingSubmitted,     from: &[Unknown, Rejected], to: Target::To(Filing) },
    Rule { event: E::FilingAccepted,      from: &[Filing],            to: Target::To(Filed) },
    Rule { event: E::FilingRefused,       from: &[Filing],            to: Target::To(Rejected) },
    Rule { event: E::ChangeSubmitted,     from: &[Filed],             to: Target::To(Changing) },
    Rule { event: E::ChangeAccepted,      from: &[Changing],          to: Target::To(Filed) },
    Rule { event: E::ChangeRefused,       from: &[Changing],          to: Target::To(Filed) },
    Rule { event: E::RevocationSubmitted, from: &[Filed],             to: Target::To(Revoking) },
    Rule { event: E::RevocationAccepted,  from: &[Revoking],          to: Target::To(Revoked) },
    Rule { event: E::RevocationRefused,   from: &[Revoking],          to: Target::To(Filed) },
    Rule { event: E::PersonalDataErased,  from: &[Unknown, Revoked, Rejected], to: Target::To(Erased) },
];
