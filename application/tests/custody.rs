//! The custody checks of the application layer, given/when/then, with the look-ups injected
//! (no store): given what the record says, when a sender acts, then allowed or refused with the
//! touched unit.

use std::collections::HashMap;

use custody_application::custody::{
    holders_unit, judge_document, require_person_custody, CustodyLookups,
};
use custody_application::{ApplicationError, Principal};
use custody_domain::custody::{Act, Actor};
use custody_domain::document::{Document, DocumentState};
use custody_domain::identifiers::{CreditCode, DocumentId, PersonId};
use custody_domain::person::{Person, PersonState};
use custody_domain::values::{DeviceSerial, Drawer, Location};

#[derive(Default)]
struct Record {
    persons: HashMap<PersonId, Person>,
}

impl CustodyLookups for Record {
    async fn document(&self, _: &DocumentId) -> Result<Document, ApplicationError> {
        Ok(Document::default())
    }
    async fn person(&self, id: &PersonId) -> Result<Person, ApplicationError> {
        Ok(self.persons.get(id).cloned().unwrap_or_default())
    }
}

fn unit() -> CreditCode {
    custody_simulator::generate::random_credit_code(&mut rand::rng())
        .parse()
        .expect("credit code")
}

fn device(serial: &str) -> DeviceSerial {
    serial.parse().expect("device serial")
}

fn cabinet(unit: &CreditCode, serial: &str) -> Principal {
    Principal {
        actor: Actor::Cabinet,
        sender: serial.into(),
        unit: Some(unit.clone()),
        cabinet: None,
    }
}

fn unit_client(unit: &CreditCode) -> Principal {
    Principal {
        actor: Actor::UnitClient,
        sender: "UNIT-CLIENT".into(),
        unit: Some(unit.clone()),
        cabinet: None,
    }
}

fn in_drawer(unit: &CreditCode, serial: &str) -> Document {
    Document {
        state: DocumentState::InCabinet,
        unit: Some(unit.clone()),
        location: Some(Location {
            unit: unit.clone(),
            device: device(serial),
            drawer: Drawer {
                body: "A".into(),
                row: 1,
                column: 1,
            },
        }),
        ..Document::default()
    }
}

fn out_of(unit: &CreditCode) -> Document {
    Document {
        state: DocumentState::Withdrawn,
        unit: Some(unit.clone()),
        ..Document::default()
    }
}

fn id() -> DocumentId {
    "0".repeat(64).parse().expect("zjbs")
}

fn refused_for(result: Result<(), ApplicationError>) -> Option<CreditCode> {
    match result {
        Err(ApplicationError::NotCustodian { custodian, .. }) => custodian,
        other => panic!("expected E_NOT_CUSTODIAN, got {other:?}"),
    }
}

#[test]
fn a_cabinet_withdraws_from_its_own_drawers_only() {
    let a = unit();
    let here = in_drawer(&a, "CAB-A1");
    // given A's document in A1, when A1 withdraws: allowed
    assert!(judge_document(&cabinet(&a, "CAB-A1"), Act::Withdraw, &id(), &here, None).is_ok());
    // when A2 (same unit) withdraws: refused, A touched
    let refused = judge_document(&cabinet(&a, "CAB-A2"), Act::Withdraw, &id(), &here, None);
    assert_eq!(refused_for(refused), Some(a.clone()));
    // when B's cabinet withdraws: refused, A touched
    let b = unit();
    let refused = judge_document(&cabinet(&b, "CAB-B1"), Act::Withdraw, &id(), &here, None);
    assert_eq!(refused_for(refused), Some(a));
}

#[test]
fn another_units_document_is_neither_deposited_nor_cancelled() {
    let (a, b) = (unit(), unit());
    let lent = out_of(&a);
    let sender = cabinet(&b, "CAB-B1");
    for act in [Act::Deposit, Act::Cancel, Act::ReconciliationRepair] {
        let refused = judge_document(&sender, act, &id(), &lent, None);
        assert_eq!(refused_for(refused), Some(a.clone()), "{act:?}");
    }
    // Its own unit's cabinets may.
    for act in [Act::Deposit, Act::Cancel, Act::ReconciliationRepair] {
        assert!(judge_document(&cabinet(&a, "CAB-A9"), act, &id(), &lent, None).is_ok());
    }
}

#[test]
fn a_document_nobody_holds_is_anyones_to_deposit() {
    let fresh = Document::default();
    assert!(judge_document(
        &cabinet(&unit(), "CAB-X"),
        Act::Deposit,
        &id(),
        &fresh,
        None
    )
    .is_ok());
}

#[tokio::test]
async fn a_never_deposited_document_belongs_to_its_holders_filing_unit() {
    let (a, b) = (unit(), unit());
    let holder: PersonId = "1".repeat(64).parse().expect("rybs");
    let mut record = Record::default();
    record.persons.insert(
        holder.clone(),
        Person {
            state: PersonState::Filed,
            unit: Some(a.clone()),
            ..Person::default()
        },
    );
    let fresh = Document::default();
    let filing_unit = holders_unit(&record, &fresh, Some(&holder))
        .await
        .expect("look-up");
    assert_eq!(filing_unit.as_ref(), Some(&a));
    let refused = judge_document(
        &cabinet(&b, "CAB-B1"),
        Act::Deposit,
        &id(),
        &fresh,
        filing_unit.as_ref(),
    );
    assert_eq!(refused_for(refused), Some(a.clone()));
    assert!(judge_document(
        &cabinet(&a, "CAB-A1"),
        Act::Deposit,
        &id(),
        &fresh,
        filing_unit.as_ref()
    )
    .is_ok());
    // Once a cabinet held it, the holder's unit is not asked.
    let held = in_drawer(&a, "CAB-A1");
    assert_eq!(
        holders_unit(&record, &held, Some(&holder))
            .await
            .expect("look-up"),
        None
    );
}

#[tokio::test]
async fn a_unit_acts_on_its_own_persons_and_on_nobodys() {
    let (a, b) = (unit(), unit());
    let filed: PersonId = "2".repeat(64).parse().expect("rybs");
    let refused_filing: PersonId = "3".repeat(64).parse().expect("rybs");
    let stranger: PersonId = "4".repeat(64).parse().expect("rybs");
    let mut record = Record::default();
    for (who, state) in [
        (&filed, PersonState::Filed),
        (&refused_filing, PersonState::Rejected),
    ] {
        record.persons.insert(
            who.clone(),
            Person {
                state,
                unit: Some(a.clone()),
                ..Person::default()
            },
        );
    }
    assert!(require_person_custody(&record, &unit_client(&a), &filed)
        .await
        .is_ok());
    match require_person_custody(&record, &unit_client(&b), &filed).await {
        Err(ApplicationError::NotCustodian { custodian, .. }) => assert_eq!(custodian, Some(a)),
        other => panic!("expected E_NOT_CUSTODIAN, got {other:?}"),
    }
    // A refused filing and a person never filed are nobody's.
    for who in [&refused_filing, &stranger] {
        assert!(require_person_custody(&record, &unit_client(&b), who)
            .await
            .is_ok());
    }
}
