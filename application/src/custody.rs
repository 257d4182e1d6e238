//! Asking the custody policy (`custody_domain::custody`, printed in docs/custody.md): the
//! look-ups that say where a document or person is, and the one check every use case makes
//! before it runs a command.

use custody_commands::Commands;
use custody_domain::custody::{
    custodian_of_document, custodian_of_person, document_whereabouts, judge, unit_whereabouts, Act,
    Actor, Decision, Whereabouts,
};
use custody_domain::document::Document;
use custody_domain::identifiers::{CreditCode, DocumentId, PersonId};
use custody_domain::person::Person;
use custody_domain::transitions::Named;

use crate::{ApplicationError, Principal};

/// What the policy needs to know about the record: a port, so that the rules can be tested
/// without a store.
pub trait CustodyLookups {
    /// The document as its events make it now (`Unknown` when it has none).
    fn document(
        &self,
        id: &DocumentId,
    ) -> impl std::future::Future<Output = Result<Document, ApplicationError>> + Send;
    /// The person as their events make them now.
    fn person(
        &self,
        id: &PersonId,
    ) -> impl std::future::Future<Output = Result<Person, ApplicationError>> + Send;
}

impl CustodyLookups for Commands {
    async fn document(&self, id: &DocumentId) -> Result<Document, ApplicationError> {
        Ok(self.load::<Document>(id.as_str()).await?)
    }

    async fn person(&self, id: &PersonId) -> Result<Person, ApplicationError> {
        Ok(self.load::<Person>(id.as_str()).await?)
    }
}

/// The unit that filed a document's holder, when that matters: only for a document no cabinet
/// ever held (else the unit whose cabinet last held it is the custodian).
pub async fn holders_unit(
    lookups: &impl CustodyLookups,
    document: &Document,
    holder: Option<&PersonId>,
) -> Result<Option<CreditCode>, ApplicationError> {
    match (&document.unit, holder.or(document.holder.as_ref())) {
        (None, Some(holder)) => {
            Ok(custodian_of_person(&CustodyLookups::person(lookups, holder).await?).cloned())
        }
        _ => Ok(None),
    }
}

/// Refuses, with `E_NOT_CUSTODIAN`, an act the policy does not allow on this document. Pure:
/// the use cases call it on the very state their command is decided on.
pub fn judge_document(
    principal: &Principal,
    act: Act,
    id: &DocumentId,
    document: &Document,
    holders_unit: Option<&CreditCode>,
) -> Result<(), ApplicationError> {
    let unit = principal.own_unit()?;
    let device = match principal.actor {
        Actor::Cabinet => principal.device().ok(),
        _ => None,
    };
    let whereabouts = document_whereabouts(document, holders_unit, unit, device.as_ref());
    decide(
        principal,
        act,
        whereabouts,
        custodian_of_document(document, holders_unit).cloned(),
        || format!("document {id}"),
    )
}

/// Refuses, with `E_NOT_CUSTODIAN`, an act on a person another unit filed; answers the person.
pub async fn require_person_custody(
    lookups: &impl CustodyLookups,
    principal: &Principal,
    id: &PersonId,
) -> Result<Person, ApplicationError> {
    let person = CustodyLookups::person(lookups, id).await?;
    let custodian = custodian_of_person(&person).cloned();
    let whereabouts = unit_whereabouts(custodian.as_ref(), principal.own_unit()?);
    decide(principal, Act::ActOnPerson, whereabouts, custodian, || {
        format!("person {id}")
    })?;
    Ok(person)
}

fn decide(
    principal: &Principal,
    act: Act,
    whereabouts: Whereabouts,
    custodian: Option<CreditCode>,
    subject: impl FnOnce() -> String,
) -> Result<(), ApplicationError> {
    match judge(principal.actor, act, whereabouts) {
        Decision::Allowed => Ok(()),
        Decision::NotCustodian => Err(ApplicationError::NotCustodian {
            message: format!(
                "{} {} may not {} {}: it is {}",
                principal.actor.name(),
                principal.sender,
                act.name(),
                subject(),
                describe(whereabouts, custodian.as_ref()),
            ),
            custodian,
        }),
    }
}

fn describe(whereabouts: Whereabouts, custodian: Option<&CreditCode>) -> String {
    match (whereabouts, custodian) {
        (Whereabouts::OtherUnit, Some(unit)) => format!("held by unit {unit}"),
        (Whereabouts::OwnUnitsOtherCabinet, _) => "in another cabinet of the unit".to_string(),
        (other, _) => other.name().to_string(),
    }
}
