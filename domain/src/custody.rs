//! Custody (SPEC §3.6): whether an authenticated sender may act on this document or person.
//!
//! Authentication says who sent a report; this table says whether that sender may act on the
//! aggregate, given where the aggregate is relative to the sender. Every use case of the
//! application layer asks it before any command runs. `docs/custody.md` prints the same table,
//! and a test compares the two.
//!
//! The table only judges custody. Whether the act is allowed in the aggregate's current state
//! is the state machine's question, asked afterwards (a lend of a document that is already out
//! of the sender's own unit's cabinet is an illegal transition, not a custody refusal).

use crate::document::{Document, DocumentState};
use crate::identifiers::CreditCode;
use crate::named_enum;
use crate::person::{Person, PersonState};
use crate::transitions::Named;
use crate::values::DeviceSerial;

/// Who acts: the kind of an authenticated sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A certificate cabinet, enrolled for one unit.
    Cabinet,
    /// A unit's client (报备单位 terminal), registered for one unit.
    UnitClient,
    /// The exit-entry administration's adapter: the authority on crossings, issuance and filing
    /// answers.
    ExitEntry,
}
named_enum!(Actor {
    Cabinet,
    UnitClient,
    ExitEntry
});

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Act {
    /// `sjsb-zjcq` 11 / 12: put a document into a drawer.
    Deposit,
    /// `sjsb-zjcq` 21 / 22 / 23: take a document out of a drawer (lend, take out, abnormal).
    Withdraw,
    /// `sjsb-zjzx`: cancel a document.
    Cancel,
    /// `sjsb-dzsj`: the automatic repair of SPEC §6.1.
    ReconciliationRepair,
    /// `sjsb-bbxx`, `sjsb-cgsp`, `sjsb-tyh`: file, change or revoke a person, record a travel
    /// approval or a consent letter for them.
    ActOnPerson,
    /// `sjts-crjjl`, `sjts-bzjg`, `sjts-bbjg`: a crossing, an issuance, a filing answer.
    ExitEntryRecord,
}
named_enum!(Act {
    Deposit,
    Withdraw,
    Cancel,
    ReconciliationRepair,
    ActOnPerson,
    ExitEntryRecord
});

/// Where the document (or person) is, seen from the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Whereabouts {
    /// In a drawer of the acting cabinet.
    ThisCabinet,
    /// In a drawer of another cabinet of the actor's unit.
    OwnUnitsOtherCabinet,
    /// Held by the actor's unit, in none of its drawers (out on a lend, awaiting return, never
    /// deposited but its holder filed by the unit); for a person: filed by the actor's unit.
    OwnUnit,
    /// Held by another unit (in one of its drawers or out); for a person: filed by another unit.
    OtherUnit,
    /// No unit holds it: never deposited and its holder not filed; for a person: never filed.
    NoUnit,
}
named_enum!(Whereabouts {
    ThisCabinet,
    OwnUnitsOtherCabinet,
    OwnUnit,
    OtherUnit,
    NoUnit
});

/// The answer of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// `E_NOT_CUSTODIAN`: nothing is appended, the report is kept, and the readers of the unit
    /// that holds the aggregate see an alert.
    NotCustodian,
}

/// One row: this actor may do this act on an aggregate in these whereabouts.
#[derive(Debug, Clone, Copy)]
pub struct CustodyRule {
    pub actor: Actor,
    pub act: Act,
    pub allowed: &'static [Whereabouts],
}

use Whereabouts::*;

/// SPEC §3.6. Anything the table does not allow is refused with `E_NOT_CUSTODIAN`.
#[rustfmt::skip]
pub const POLICY: &[CustodyRule] = &[
    // A deposit of a document another unit holds would move it between units as a side effect
    // of a report: refused (there is no transfer between units yet; docs/custody.md).
    CustodyRule { actor: Actor::Cabinet, act: Act::Deposit,
                  allowed: &[ThisCabinet, OwnUnitsOtherCabinet, OwnUnit, NoUnit] },
    // Only from one of its own drawers. A document of its unit that is in no drawer reaches
    // the state machine, which refuses the withdrawal as an illegal transition.
    CustodyRule { actor: Actor::Cabinet, act: Act::Withdraw,
                  allowed: &[ThisCabinet, OwnUnit, NoUnit] },
    CustodyRule { actor: Actor::Cabinet, act: Act::Cancel,
                  allowed: &[ThisCabinet, OwnUnitsOtherCabinet, OwnUnit, NoUnit] },
    // Another unit's document listed as in the cabinet is a deviation, never a repair.
    CustodyRule { actor: Actor::Cabinet, act: Act::ReconciliationRepair,
                  allowed: &[ThisCabinet, OwnUnitsOtherCabinet, OwnUnit, NoUnit] },
    CustodyRule { actor: Actor::UnitClient, act: Act::ActOnPerson,
                  allowed: &[OwnUnit, NoUnit] },
    CustodyRule { actor: Actor::ExitEntry, act: Act::ExitEntryRecord,
                  allowed: &[ThisCabinet, OwnUnitsOtherCabinet, OwnUnit, OtherUnit, NoUnit] },
];

/// The table's answer for one case.
pub fn judge(actor: Actor, act: Act, whereabouts: Whereabouts) -> Decision {
    let allowed = POLICY
        .iter()
        .any(|rule| rule.actor == actor && rule.act == act && rule.allowed.contains(&whereabouts));
    if allowed {
        Decision::Allowed
    } else {
        Decision::NotCustodian
    }
}

/// Every case the table decides, by name: what the docs test compares. Each (actor, act) pair
/// that has a row is listed with all whereabouts.
pub fn cases() -> Vec<(String, String, String, &'static str)> {
    let mut out = Vec::new();
    for rule in POLICY {
        for whereabouts in Whereabouts::ALL {
            let decision = match judge(rule.actor, rule.act, *whereabouts) {
                Decision::Allowed => "allowed",
                Decision::NotCustodian => "E_NOT_CUSTODIAN",
            };
            out.push((
                rule.actor.name().to_string(),
                rule.act.name().to_string(),
                whereabouts.name().to_string(),
                decision,
            ));
        }
    }
    out
}

/// The unit that holds a document: the unit whose cabinet last held it, else (never deposited)
/// the unit that filed its holder.
pub fn custodian_of_document<'a>(
    document: &'a Document,
    holders_unit: Option<&'a CreditCode>,
) -> Option<&'a CreditCode> {
    document.unit.as_ref().or(holders_unit)
}

/// The unit that filed a person, while the filing stands: a filing the exit-entry
/// administration refused makes the person nobody's, so that another unit may file them.
pub fn custodian_of_person(person: &Person) -> Option<&CreditCode> {
    match person.state {
        PersonState::Unknown | PersonState::Rejected => None,
        _ => person.unit.as_ref(),
    }
}

/// Where a document is, seen from a cabinet of `unit` (`device`), or from a sender of `unit`
/// that is no cabinet (`device` None).
pub fn document_whereabouts(
    document: &Document,
    holders_unit: Option<&CreditCode>,
    unit: &CreditCode,
    device: Option<&DeviceSerial>,
) -> Whereabouts {
    if document.state == DocumentState::InCabinet {
        if let Some(location) = &document.location {
            return if Some(&location.device) == device {
                ThisCabinet
            } else if &location.unit == unit {
                OwnUnitsOtherCabinet
            } else {
                OtherUnit
            };
        }
    }
    unit_whereabouts(custodian_of_document(document, holders_unit), unit)
}

/// Where a person (or anything held by a unit) is, seen from a sender of `unit`.
pub fn unit_whereabouts(custodian: Option<&CreditCode>, unit: &CreditCode) -> Whereabouts {
    match custodian {
        Some(custodian) if custodian == unit => OwnUnit,
        Some(_) => OtherUnit,
        None => NoUnit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_without_a_row_is_refused() {
        assert_eq!(
            judge(Actor::UnitClient, Act::Deposit, NoUnit),
            Decision::NotCustodian
        );
        assert_eq!(
            judge(Actor::Cabinet, Act::ActOnPerson, OwnUnit),
            Decision::NotCustodian
        );
    }

    #[test]
    fn a_cabinet_withdraws_only_from_its_own_drawers() {
        assert_eq!(
            judge(Actor::Cabinet, Act::Withdraw, ThisCabinet),
            Decision::Allowed
        );
        for elsewhere in [OwnUnitsOtherCabinet, OtherUnit] {
            assert_eq!(
                judge(Actor::Cabinet, Act::Withdraw, elsewhere),
                Decision::NotCustodian
            );
        }
    }

    #[test]
    fn every_rule_names_a_distinct_pair() {
        for (i, a) in POLICY.iter().enumerate() {
            for b in &POLICY[i + 1..] {
                assert!(
                    (a.actor, a.act) != (b.actor, b.act),
                    "{:?} {:?} twice",
                    a.actor,
                    a.act
                );
            }
        }
    }
}
