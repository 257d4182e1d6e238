use chrono::{Months, NaiveDate};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::ConsentLetterCommand;
use super::events::*;
use super::state::{ConsentLetterState, TRANSITIONS};
use crate::transitions::{next_state, require};
use crate::DomainError;

/// A consent letter, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsentLetter {
    pub state: ConsentLetterState,
    pub details: Option<LetterRecorded>,
}

impl ConsentLetter {
    pub const AGGREGATE: &'static str = "ConsentLetter";

    /// How long a letter is valid (SPEC §3.3).
    pub const VALIDITY: Months = Months::new(3);

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(&self, command: ConsentLetterCommand) -> Result<ConsentLetterEvent, DomainError> {
        let event = match command {
            ConsentLetterCommand::Record(letter) => ConsentLetterEvent::LetterRecorded(letter),
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }

    /// The last day the letter is valid: the same day 3 months after issue (the month's last
    /// day when that month is shorter).
    pub fn valid_until(&self) -> Option<NaiveDate> {
        self.details
            .as_ref()?
            .issued_on
            .checked_add_months(Self::VALIDITY)
    }

    /// Whether the letter is issued and valid on `day` (China time).
    pub fn is_valid_on(&self, day: NaiveDate) -> bool {
        match (&self.details, self.valid_until()) {
            (Some(details), Some(until)) => {
                self.state == ConsentLetterState::Issued && details.issued_on <= day && day <= until
            }
            _ => false,
        }
    }
}

impl Aggregate for ConsentLetter {
    const TYPE: &'static str = ConsentLetter::AGGREGATE;
    type Command = ConsentLetterCommand;
    type Event = ConsentLetterEvent;
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
            ConsentLetterEvent::LetterRecorded(e) => self.details = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identifiers::{CitizenId, DocumentType, PersonId};
    use crate::travel_approval::SignedForm;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    fn letter(issued_on: NaiveDate) -> LetterRecorded {
        let citizen: CitizenId = "11010519491231002X".parse().expect("citizen id");
        LetterRecorded {
            holder: PersonId::of(&citizen, "张三"),
            unit: "91350100M000100Y43".parse().expect("credit code"),
            travel_approval: None,
            purpose: ConsentPurpose::Renewal,
            document_type: DocumentType::OrdinaryPassport,
            issued_on,
            form: SignedForm {
                sm3: "0".repeat(64),
                size: 1,
                signature: "c2ln".into(),
            },
        }
    }

    fn issued(on: NaiveDate) -> ConsentLetter {
        let mut letter = ConsentLetter::default();
        let event = letter
            .decide(ConsentLetterCommand::Record(self::letter(on)))
            .expect("recorded");
        letter.apply(event);
        letter
    }

    #[test]
    fn valid_for_three_months_from_issue() {
        let letter = issued(date(2026, 11, 30));
        assert_eq!(letter.state, ConsentLetterState::Issued);
        // February has no 30th: the month's last day.
        assert_eq!(letter.valid_until(), Some(date(2027, 2, 28)));
        assert!(!letter.is_valid_on(date(2026, 11, 29)));
        assert!(letter.is_valid_on(date(2026, 11, 30)));
        assert!(letter.is_valid_on(date(2027, 2, 28)));
        assert!(!letter.is_valid_on(date(2027, 3, 1)));
        assert!(!ConsentLetter::default().is_valid_on(date(2026, 12, 1)));
    }

    #[test]
    fn a_letter_is_recorded_once() {
        assert!(matches!(
            issued(date(2026, 11, 30))
                .decide(ConsentLetterCommand::Record(letter(date(2026, 12, 1)))),
            Err(DomainError::IllegalTransition {
                current: "Issued",
                ..
            })
        ));
    }
}
