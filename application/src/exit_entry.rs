//! The exit-entry adapter's intakes (`sjts-*`): border crossings, newly issued documents and the
//! answers to filing lists. The administration is the authority on these (docs/custody.md), so
//! the policy lets it act on any document or person; each item is idempotent on its own.

use custody_commands::Outcome;
use custody_domain::custody::{judge, Act, Decision, Whereabouts};
use custody_domain::document::{BorderCrossed, DocumentCommand, IssuanceConfirmed};
use custody_domain::identifiers::{BusinessSerial, DocumentId, PersonId};
use custody_domain::person::{FilingAnswered, PersonCommand};
use custody_domain::transitions::Named;

use crate::unit::FilingKind;
use crate::{fingerprint, keys, Application, ApplicationError, Intake, Principal};

/// The exit-entry administration's answer for one person of a filing list.
#[derive(Debug, Clone)]
pub struct FilingAnswer {
    pub person: PersonId,
    pub kind: FilingKind,
    pub accepted: bool,
    pub remark: Option<String>,
}

impl Application {
    /// One border crossing of a document, whatever its state: every crossing is kept.
    pub async fn record_crossing(
        &self,
        intake: &Intake,
        document: &DocumentId,
        crossing: BorderCrossed,
    ) -> Result<Outcome, ApplicationError> {
        require_authority(&intake.principal)?;
        intake.not_ahead("crjsj", crossing.crossed_at)?;
        let record_id = crossing.record_id.clone();
        let content = fingerprint(&(document, &crossing));
        Ok(self
            .commands
            .document(
                document.as_str(),
                DocumentCommand::RecordCrossing(crossing),
                intake.metadata(
                    Some(&record_id),
                    Some(keys::crossing(&record_id)),
                    Some(content),
                ),
            )
            .await?)
    }

    /// A newly issued document, not yet in a cabinet.
    pub async fn confirm_issuance(
        &self,
        intake: &Intake,
        issuance: IssuanceConfirmed,
    ) -> Result<Outcome, ApplicationError> {
        require_authority(&intake.principal)?;
        intake.date_not_ahead("qfrq", issuance.issued_on)?;
        if issuance.valid_until <= issuance.issued_on {
            return Err(ApplicationError::invalid(
                "yxqz",
                format!(
                    "expiry {} is not after the issue date {}",
                    issuance.valid_until, issuance.issued_on
                ),
            ));
        }
        // A report carries the number itself; only the log hands back an erased mark.
        let Some(number) = issuance.number.known() else {
            return Err(ApplicationError::invalid(
                "zjhm",
                "no document number".to_string(),
            ));
        };
        let document = DocumentId::of(issuance.document_type, number);
        let record_id = issuance.record_id.clone();
        let content = fingerprint(&issuance);
        Ok(self
            .commands
            .document(
                document.as_str(),
                DocumentCommand::ConfirmIssuance(issuance),
                intake.metadata(
                    Some(&record_id),
                    Some(keys::issuance(&record_id)),
                    Some(content),
                ),
            )
            .await?)
    }

    /// The answer for one person of a filing list. It must answer what that list asked for
    /// that person: the administration answers the lists the platform forwarded, so anything
    /// else is a mix-up, not a state to record.
    pub async fn answer_filing(
        &self,
        intake: &Intake,
        list: &BusinessSerial,
        answer: FilingAnswer,
    ) -> Result<Outcome, ApplicationError> {
        require_authority(&intake.principal)?;
        let person = &answer.person;
        let submitted = format!("{}{}", keys::filing_prefix(list.as_str()), person);
        let submission = self
            .commands
            .log()
            .event_by_idempotency_key(&submitted)
            .await?;
        match submission.and_then(|event| FilingKind::of_submission(&event.event_type)) {
            None => {
                return Err(ApplicationError::invalid(
                    "rybs",
                    format!("{person} is not in filing list {list}"),
                ))
            }
            Some(asked) if asked != answer.kind => {
                return Err(ApplicationError::invalid(
                    "bblx",
                    format!(
                        "filing list {list} asked {} for {person}, not {}",
                        asked.code(),
                        answer.kind.code()
                    ),
                ))
            }
            Some(_) => {}
        }
        let content = fingerprint(&(answer.kind, answer.accepted, &answer.remark));
        let answered = FilingAnswered {
            filing_serial: list.to_string(),
            remark: answer.remark,
        };
        let command = match (answer.kind, answer.accepted) {
            (FilingKind::New, true) => PersonCommand::AcceptFiling(answered),
            (FilingKind::New, false) => PersonCommand::RefuseFiling(answered),
            (FilingKind::Change, true) => PersonCommand::AcceptChange(answered),
            (FilingKind::Change, false) => PersonCommand::RefuseChange(answered),
            (FilingKind::Revoke, true) => PersonCommand::AcceptRevocation(answered),
            (FilingKind::Revoke, false) => PersonCommand::RefuseRevocation(answered),
        };
        let key = format!("{}{}", keys::answer_prefix(list.as_str()), person);
        Ok(self
            .commands
            .person(
                person.as_str(),
                command,
                intake.metadata(Some(list.as_str()), Some(key), Some(content)),
            )
            .await?)
    }
}

/// The exit-entry administration may record on any document or person: the policy's row says
/// so for every whereabouts, so asking it needs no look-up.
fn require_authority(principal: &Principal) -> Result<(), ApplicationError> {
    match judge(
        principal.actor,
        Act::ExitEntryRecord,
        Whereabouts::OtherUnit,
    ) {
        Decision::Allowed => Ok(()),
        Decision::NotCustodian => Err(ApplicationError::NotCustodian {
            message: format!(
                "{} {} is not the exit-entry administration",
                principal.actor.name(),
                principal.sender
            ),
            custodian: None,
        }),
    }
}
