//! The unit client's intakes: filing lists (`sjsb-bbxx`) and their answers (`sjfk-bbjg`),
//! travel approvals (`sjsb-cgsp`) and consent letters (`sjsb-tyh`). A unit client is registered
//! for one unit, speaks only for it and acts only on persons its unit filed (docs/custody.md).

use custody_commands::Outcome;
use custody_domain::consent_letter::{ConsentLetter, ConsentLetterCommand, LetterRecorded};
use custody_domain::identifiers::{BusinessSerial, PersonId};
use custody_domain::person::{
    ChangeSubmitted, FilingSubmitted, PersonCommand, PersonDetails, PersonEventKind,
    RevocationSubmitted,
};
use custody_domain::transitions::Named;
use custody_domain::travel_approval::{
    ApprovalRecorded, TravelApproval, TravelApprovalCommand, TravelApprovalState,
};
use serde::Serialize;

use crate::custody::require_person_custody;
use crate::{fingerprint, keys, Application, ApplicationError, Intake, Principal};

/// What a filing list asks for one person (`bblx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FilingKind {
    New,
    Change,
    Revoke,
}

impl FilingKind {
    /// The wire code (`bblx`).
    pub fn code(self) -> &'static str {
        match self {
            FilingKind::New => "new",
            FilingKind::Change => "change",
            FilingKind::Revoke => "revoke",
        }
    }

    /// The kind of a stored submission event (`FilingSubmitted`, ...), if it is one.
    pub fn of_submission(event_type: &str) -> Option<FilingKind> {
        [
            (PersonEventKind::FilingSubmitted, FilingKind::New),
            (PersonEventKind::ChangeSubmitted, FilingKind::Change),
            (PersonEventKind::RevocationSubmitted, FilingKind::Revoke),
        ]
        .into_iter()
        .find(|(kind, _)| kind.name() == event_type)
        .map(|(_, filing)| filing)
    }
}

/// One person of a filing list. A revocation may come without personal data.
#[derive(Debug, Clone)]
pub struct FilingEntry {
    pub person: PersonId,
    pub kind: FilingKind,
    pub details: Option<PersonDetails>,
}

/// Where one person of a filing list stands, as `sjfk-bbjg` answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilingStatus {
    /// Submitted and not answered yet by the exit-entry administration.
    Pending,
    Accepted,
    Refused,
}

/// One person of a filing list and where their filing stands.
#[derive(Debug, Clone)]
pub struct FilingResult {
    pub person: String,
    pub kind: Option<FilingKind>,
    pub status: FilingStatus,
}

impl Application {
    /// Refuses a list that names another unit than the signing client's.
    pub fn check_list_unit(
        &self,
        principal: &Principal,
        named: &str,
    ) -> Result<(), ApplicationError> {
        principal.check_unit("tyshxydm", named)
    }

    /// One person of a filing list: a new filing, a change or a revocation.
    pub async fn file_person(
        &self,
        intake: &Intake,
        list: &BusinessSerial,
        entry: FilingEntry,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        require_person_custody(self.commands.as_ref(), principal, &entry.person).await?;
        let content = fingerprint(&(entry.kind, &entry.details));
        let filing_serial = list.to_string();
        let command = match (entry.kind, entry.details) {
            (FilingKind::New, Some(details)) => PersonCommand::SubmitFiling(FilingSubmitted {
                filing_serial,
                unit: principal.own_unit()?.clone(),
                details: details.into(),
            }),
            (FilingKind::Change, Some(details)) => PersonCommand::SubmitChange(ChangeSubmitted {
                filing_serial,
                details: details.into(),
            }),
            (FilingKind::Revoke, _) => {
                PersonCommand::SubmitRevocation(RevocationSubmitted { filing_serial })
            }
            (_, None) => {
                return Err(ApplicationError::invalid(
                    "rydata",
                    "a new filing or a change needs the person's data",
                ))
            }
        };
        let key = format!("{}{}", keys::filing_prefix(list.as_str()), entry.person);
        Ok(self
            .commands
            .person(
                entry.person.as_str(),
                command,
                intake.metadata(Some(list.as_str()), Some(key), Some(content)),
            )
            .await?)
    }

    /// Where each person of one of the unit's filing lists stands. Another unit's list answers
    /// exactly as a list that does not exist.
    pub async fn filing_results(
        &self,
        principal: &Principal,
        list: &BusinessSerial,
        unit_of_sender: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<FilingResult>, ApplicationError> {
        let unit = principal.own_unit()?;
        let log = self.commands.log();
        let submissions = log
            .events_with_key_prefix(&keys::filing_prefix(list.as_str()))
            .await?;
        let own = !submissions.is_empty()
            && submissions.iter().all(|event| {
                event.metadata["ei"]
                    .as_str()
                    .and_then(&unit_of_sender)
                    .is_some_and(|sender_unit| sender_unit == unit.as_str())
            });
        if !own {
            return Err(ApplicationError::NotFound(format!(
                "no filing list {list} of unit {unit}"
            )));
        }
        let answers = log
            .events_with_key_prefix(&keys::answer_prefix(list.as_str()))
            .await?;
        Ok(submissions
            .iter()
            .map(|submission| {
                let answer = answers
                    .iter()
                    .find(|a| a.aggregate_id == submission.aggregate_id)
                    .map(|a| a.event_type.as_str());
                FilingResult {
                    person: submission.aggregate_id.clone(),
                    kind: FilingKind::of_submission(&submission.event_type),
                    status: match answer {
                        Some(t) if t.ends_with("Accepted") => FilingStatus::Accepted,
                        Some(t) if t.ends_with("Refused") => FilingStatus::Refused,
                        _ => FilingStatus::Pending,
                    },
                }
            })
            .collect())
    }

    /// A travel approval of one of the unit's persons. Its unit is the signing client's.
    pub async fn record_travel_approval(
        &self,
        intake: &Intake,
        serial: &BusinessSerial,
        mut approval: ApprovalRecorded,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        approval.unit = principal.own_unit()?.clone();
        intake.date_not_ahead("tysj", approval.approved_on)?;
        require_person_custody(self.commands.as_ref(), principal, &approval.holder).await?;
        let content = fingerprint(&approval);
        Ok(self
            .commands
            .execute::<TravelApproval>(
                serial.as_str(),
                TravelApprovalCommand::Record(approval),
                intake.metadata(
                    Some(serial.as_str()),
                    Some(serial.to_string()),
                    Some(content),
                ),
            )
            .await?)
    }

    /// A consent letter for one of the unit's persons. Its unit is the signing client's; a
    /// letter made for an approval is for that approval's person.
    pub async fn record_consent_letter(
        &self,
        intake: &Intake,
        serial: &BusinessSerial,
        mut letter: LetterRecorded,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        letter.unit = principal.own_unit()?.clone();
        intake.date_not_ahead("kjrq", letter.issued_on)?;
        require_person_custody(self.commands.as_ref(), principal, &letter.holder).await?;
        // (The approval may be reported after the letter; then there is nothing to compare.)
        if let Some(approval_serial) = &letter.travel_approval {
            let approval: TravelApproval = self.commands.load(approval_serial).await?;
            let foreign = approval.state == TravelApprovalState::Approved
                && approval.details.as_ref().map(|d| &d.holder) != Some(&letter.holder);
            if foreign {
                return Err(ApplicationError::invalid(
                    "cgspywlsh",
                    format!("travel approval {approval_serial} is another person's"),
                ));
            }
        }
        let content = fingerprint(&letter);
        Ok(self
            .commands
            .execute::<ConsentLetter>(
                serial.as_str(),
                ConsentLetterCommand::Record(letter),
                intake.metadata(
                    Some(serial.as_str()),
                    Some(serial.to_string()),
                    Some(content),
                ),
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submissions_name_their_filing_kind() {
        assert_eq!(
            FilingKind::of_submission("FilingSubmitted"),
            Some(FilingKind::New)
        );
        assert_eq!(
            FilingKind::of_submission("ChangeSubmitted"),
            Some(FilingKind::Change)
        );
        assert_eq!(
            FilingKind::of_submission("RevocationSubmitted"),
            Some(FilingKind::Revoke)
        );
        assert_eq!(FilingKind::of_submission("FilingAccepted"), None);
    }
}
