use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::PersonCommand;
use super::events::*;
use super::state::{PersonState, TRANSITIONS};
use crate::identifiers::CreditCode;
use crate::transitions::{next_state, require};
use crate::DomainError;

/// A person registered for filing, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub state: PersonState,
    pub unit: Option<CreditCode>,
    /// The details in force.
    pub details: Option<PersonDetails>,
    /// Details submitted in a change that the exit-entry administration has not answered yet.
    pub pending_details: Option<PersonDetails>,
}

impl Person {
    pub const AGGREGATE: &'static str = "Person";

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(&self, command: PersonCommand) -> Result<PersonEvent, DomainError> {
        let event = match command {
            PersonCommand::SubmitFiling(e) => PersonEvent::FilingSubmitted(e),
            PersonCommand::AcceptFiling(e) => PersonEvent::FilingAccepted(e),
            PersonCommand::RefuseFiling(e) => PersonEvent::FilingRefused(e),
            PersonCommand::SubmitChange(e) => PersonEvent::ChangeSubmitted(e),
            PersonCommand::AcceptChange(e) => PersonEvent::ChangeAccepted(e),
            PersonCommand::RefuseChange(e) => PersonEvent::ChangeRefused(e),
            PersonCommand::SubmitRevocation(e) => PersonEvent::RevocationSubmitted(e),
            PersonCommand::AcceptRevocation(e) => PersonEvent::RevocationAccepted(e),
            PersonCommand::RefuseRevocation(e) => PersonEvent::RevocationRefused(e),
            PersonCommand::ErasePersonalData(e) => PersonEvent::PersonalDataErased(e),
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }
}

impl Aggregate for Person {
    const TYPE: &'static str = Person::AGGREGATE;
    type Command = PersonCommand;
    type Event = PersonEvent;
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
            PersonEvent::FilingSubmitted(e) => {
                self.unit = Some(e.unit);
                self.details = e.details.into_known();
            }
            PersonEvent::ChangeSubmitted(e) => self.pending_details = e.details.into_known(),
            PersonEvent::ChangeAccepted(_) => {
                if let Some(details) = self.pending_details.take() {
                    self.details = Some(details);
                }
            }
            PersonEvent::ChangeRefused(_) => self.pending_details = None,
            PersonEvent::PersonalDataErased(_) => {
                self.details = None;
                self.pending_details = None;
            }
            PersonEvent::FilingAccepted(_)
            | PersonEvent::FilingRefused(_)
            | PersonEvent::RevocationSubmitted(_)
            | PersonEvent::RevocationAccepted(_)
            | PersonEvent::RevocationRefused(_) => {}
        }
    }
}
