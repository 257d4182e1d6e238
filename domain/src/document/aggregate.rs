use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::{ApprovalCheck, DocumentCommand};
use super::events::*;
use super::state::{DocumentState, TRANSITIONS};
use crate::identifiers::{CreditCode, DocumentNumber, DocumentType, PersonId};
use crate::transitions::{next_state, require};
use crate::values::Personal;
use crate::values::{china_standard_time, DocumentRecord, Location, Timestamp};
use crate::DomainError;

/// A travel document as the platform knows it, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub state: DocumentState,
    pub document_type: Option<DocumentType>,
    pub number: Option<DocumentNumber>,
    pub holder: Option<PersonId>,
    /// The latest record a cabinet read from the document itself.
    pub record: Option<DocumentRecord>,
    /// The drawer it is in, while `InCabinet`.
    pub location: Option<Location>,
    /// The planned return date of the current lend.
    pub planned_return: Option<NaiveDate>,
    /// The unit whose cabinet last held it.
    pub unit: Option<CreditCode>,
    /// The business time of its latest cabinet operation (deposit or withdrawal): the next
    /// one may not be earlier (docs/protocol.md, "Time rules").
    #[serde(default)]
    pub last_operated_at: Option<Timestamp>,
}

impl Document {
    pub const AGGREGATE: &'static str = "Document";

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(&self, command: DocumentCommand) -> Result<DocumentEvent, DomainError> {
        let event = match command {
            DocumentCommand::FileApplication(e) => DocumentEvent::ApplicationFiled(e),
            DocumentCommand::ConfirmIssuance(e) => DocumentEvent::IssuanceConfirmed(e),
            DocumentCommand::Deposit(e) => DocumentEvent::Deposited(e),
            DocumentCommand::Withdraw {
                mut withdrawal,
                approval,
            } => {
                if withdrawal.kind == WithdrawalKind::Lend && withdrawal.planned_return.is_none() {
                    return Err(DomainError::MissingField("retdate"));
                }
                let operated_on = withdrawal
                    .operated_at
                    .with_timezone(&china_standard_time())
                    .date_naive();
                if let Some(planned) = withdrawal.planned_return.filter(|d| *d < operated_on) {
                    return Err(DomainError::InvalidField {
                        field: "retdate",
                        reason: format!("{planned} is before the operation date {operated_on}"),
                    });
                }
                // The drawer is already open: a lend without a valid approval is recorded and
                // flagged, not refused (SPEC §3.3).
                withdrawal.anomaly = (withdrawal.kind == WithdrawalKind::Lend
                    && approval == ApprovalCheck::Missing)
                    .then_some(Anomaly::WithdrawalWithoutApproval);
                DocumentEvent::Withdrawn(withdrawal)
            }
            DocumentCommand::WithdrawAbnormally(e) => DocumentEvent::AbnormalWithdrawal(e),
            DocumentCommand::RecordCrossing(mut crossing) => {
                crossing.anomaly = match (self.state, crossing.direction) {
                    (DocumentState::Unknown, _) => Some(Anomaly::CrossingOfUnknownDocument),
                    (DocumentState::InCabinet, CrossingDirection::Exit) => {
                        Some(Anomaly::ExitWhileInCabinet)
                    }
                    _ => None,
                };
                DocumentEvent::BorderCrossed(crossing)
            }
            DocumentCommand::MarkReturnDateReached { today } => {
                require(
                    TRANSITIONS,
                    Self::AGGREGATE,
                    self.state,
                    super::DocumentEventKind::ReturnDateReached,
                )?;
                let planned_return = self
                    .planned_return
                    .ok_or(DomainError::MissingField("planned_return"))?;
                // The shared overdue rule: due back from the first overdue day.
                if crate::reminder::overdue_days(Some(planned_return), today) == 0 {
                    return Err(DomainError::NotYetDue {
                        planned_return,
                        today,
                    });
                }
                DocumentEvent::ReturnDateReached(ReturnDateReached {
                    planned_return,
                    observed_on: today,
                })
            }
            DocumentCommand::Cancel(e) => DocumentEvent::Cancelled(e),
            DocumentCommand::CorrectByReconciliation(e) => {
                DocumentEvent::ReconciliationCorrected(e)
            }
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        if let (Some(at), Some(latest)) = (event.operated_at(), self.last_operated_at) {
            // A cabinet that was offline reports in order; nothing it did can precede what
            // it already reported.
            if at < latest {
                return Err(DomainError::OutOfOrder {
                    field: "optime",
                    at: at.to_rfc3339(),
                    latest: latest.to_rfc3339(),
                });
            }
        }
        Ok(event)
    }
}

impl Aggregate for Document {
    const TYPE: &'static str = Document::AGGREGATE;
    type Command = DocumentCommand;
    type Event = DocumentEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        // Stored events were allowed when written; the table still decides the state so that
        // replay and command handling can never disagree.
        if let Some(next) = next_state(TRANSITIONS, self.state, event.kind()) {
            self.state = next;
        }
        if let Some(at) = event.operated_at() {
            self.last_operated_at = Some(self.last_operated_at.map_or(at, |latest| latest.max(at)));
        }
        match event {
            DocumentEvent::ApplicationFiled(e) => {
                self.holder = Some(e.holder);
                self.document_type = Some(e.document_type);
            }
            DocumentEvent::IssuanceConfirmed(e) => {
                self.holder = Some(e.holder);
                self.document_type = Some(e.document_type);
                self.number = e.number.into_known();
            }
            DocumentEvent::Deposited(e) => {
                self.holder = Some(e.holder());
                match e.record {
                    Personal::Known(record) => {
                        self.document_type = Some(record.document_type);
                        self.number = Some(record.number.clone());
                        self.record = Some(record);
                    }
                    // The holder was erased: what the record said is gone, and the aggregate
                    // no longer claims to know it (its type, which is not personal, stays).
                    Personal::Erased(_) => {
                        self.number = None;
                        self.record = None;
                    }
                }
                self.unit = Some(e.location.unit.clone());
                self.location = Some(e.location);
                self.planned_return = None;
            }
            DocumentEvent::Withdrawn(e) => {
                self.unit = Some(e.location.unit);
                self.location = None;
                self.planned_return = e.planned_return;
            }
            DocumentEvent::AbnormalWithdrawal(_) => {
                self.location = None;
                self.planned_return = None;
            }
            DocumentEvent::BorderCrossed(_) | DocumentEvent::ReturnDateReached(_) => {}
            DocumentEvent::Cancelled(_) => {
                self.location = None;
            }
            DocumentEvent::ReconciliationCorrected(e) => {
                self.unit = Some(e.location.unit.clone());
                self.location = Some(e.location);
                self.planned_return = None;
            }
        }
    }
}
