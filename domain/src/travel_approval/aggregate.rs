use chrono::{Days, NaiveDate};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::TravelApprovalCommand;
use super::events::*;
use super::state::{TravelApprovalState, TRANSITIONS};
use crate::identifiers::PersonId;
use crate::transitions::{next_state, require};
use crate::DomainError;

/// A travel approval, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TravelApproval {
    pub state: TravelApprovalState,
    pub details: Option<ApprovalRecorded>,
}

impl TravelApproval {
    pub const AGGREGATE: &'static str = "TravelApproval";

    /// Days after the return date during which the approval still counts (SPEC §3.3).
    pub const GRACE_DAYS: u64 = 15;

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(
        &self,
        command: TravelApprovalCommand,
    ) -> Result<TravelApprovalEvent, DomainError> {
        let event = match command {
            TravelApprovalCommand::Record(approval) => {
                if approval.return_date < approval.departure {
                    return Err(DomainError::InvalidField {
                        field: "fhsj",
                        reason: format!(
                            "return date {} is before departure {}",
                            approval.return_date, approval.departure
                        ),
                    });
                }
                // Approved after the return date, it would never be valid for the trip.
                if approval.approved_on > approval.return_date {
                    return Err(DomainError::InvalidField {
                        field: "tysj",
                        reason: format!(
                            "approval date {} is after the return date {}",
                            approval.approved_on, approval.return_date
                        ),
                    });
                }
                TravelApprovalEvent::ApprovalRecorded(approval)
            }
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }

    /// The last day the approval is valid: the return date plus 15 days.
    pub fn valid_until(&self) -> Option<NaiveDate> {
        let details = self.details.as_ref()?;
        details
            .return_date
            .checked_add_days(Days::new(Self::GRACE_DAYS))
    }

    /// Whether this is a recorded approval of `holder` that is valid on `day` (China time).
    pub fn covers(&self, holder: &PersonId, day: NaiveDate) -> bool {
        match (&self.details, self.valid_until()) {
            (Some(details), Some(until)) => {
                self.state == TravelApprovalState::Approved
                    && &details.holder == holder
                    && details.approved_on <= day
                    && day <= until
            }
            _ => false,
        }
    }
}

impl Aggregate for TravelApproval {
    const TYPE: &'static str = TravelApproval::AGGREGATE;
    type Command = TravelApprovalCommand;
    type Event = TravelApprovalEvent;
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
        if let Some(next) = next_state(TRANSITIONS, self.state, event.kind()) {
            self.state = next;
        }
        match event {
            TravelApprovalEvent::ApprovalRecorded(e) => self.details = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{CitizenId, DocumentType};

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn holder() -> PersonId {
        let id: CitizenId = "11010519491231002X".parse().expect("citizen id");
        PersonId::of(&id, "张三")
    }

    fn approval() -> ApprovalRecorded {
        ApprovalRecorded {
            holder: holder(),
            unit: "91350100M000100Y43".parse().expect("credit code"),
            destination: "HKG".into(),
            departure: date(2026, 12, 1),
            return_date: date(2026, 12, 10),
            reason: Some("探亲".into()),
            document_type: DocumentType::HongKongMacauPermit,
            approved_on: date(2026, 11, 20),
            form: SignedForm {
                sm3: "0".repeat(64),
                size: 1,
                signature: "c2ln".into(),
            },
        }
    }

    fn recorded() -> TravelApproval {
        let mut approval = TravelApproval::default();
        let event = approval
            .decide(TravelApprovalCommand::Record(self::approval()))
            .expect("recorded");
        approval.apply(event);
        approval
    }

    #[test]
    fn valid_from_approval_until_return_plus_fifteen_days() {
        let approval = recorded();
        assert_eq!(approval.state, TravelApprovalState::Approved);
        assert_eq!(approval.valid_until(), Some(date(2026, 12, 25)));
        assert!(!approval.covers(&holder(), date(2026, 11, 19)));
        assert!(approval.covers(&holder(), date(2026, 11, 20)));
        assert!(approval.covers(&holder(), date(2026, 12, 25)));
        assert!(!approval.covers(&holder(), date(2026, 12, 26)));
        let mut digits = [0u8; 17];
        digits.copy_from_slice(b"31010419800101001");
        let other: CitizenId = format!("31010419800101001{}", CitizenId::check_character(&digits))
            .parse()
            .expect("citizen id");
        assert!(!approval.covers(&PersonId::of(&other, "李四"), date(2026, 12, 1)));
        assert!(!TravelApproval::default().covers(&holder(), date(2026, 12, 1)));
    }

    #[test]
    fn impossible_dates_and_a_second_record_are_refused() {
        let mut backwards = approval();
        backwards.return_date = date(2026, 11, 30);
        assert!(matches!(
            TravelApproval::default().decide(TravelApprovalCommand::Record(backwards)),
            Err(DomainError::InvalidField { field: "fhsj", .. })
        ));
        let mut late = approval();
        late.approved_on = date(2026, 12, 11);
        assert!(matches!(
            TravelApproval::default().decide(TravelApprovalCommand::Record(late)),
            Err(DomainError::InvalidField { field: "tysj", .. })
        ));
        assert!(matches!(
            recorded().decide(TravelApprovalCommand::Record(approval())),
            Err(DomainError::IllegalTransition {
                current: "Approved",
                ..
            })
        ));
    }
}
