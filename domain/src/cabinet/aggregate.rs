use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::CabinetCommand;
use super::events::*;
use super::state::{CabinetState, TRANSITIONS};
use crate::identifiers::CreditCode;
use crate::transitions::{next_state, require};
use crate::values::Drawer;
use crate::DomainError;

/// A cabinet device (touch terminal with one or more cabinet bodies), folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cabinet {
    pub state: CabinetState,
    pub unit: Option<CreditCode>,
    pub model: Option<String>,
    pub bodies: Vec<CabinetBody>,
    pub public_key_pem: Option<String>,
    pub administrators: Vec<Administrator>,
}

impl Cabinet {
    pub const AGGREGATE: &'static str = "Cabinet";

    pub fn decide(&self, command: CabinetCommand) -> Result<CabinetEvent, DomainError> {
        let event = match command {
            CabinetCommand::Enroll(e) => {
                if e.bodies.is_empty() {
                    return Err(DomainError::MissingField("cabinets"));
                }
                if e.bodies.iter().any(|b| b.rows == 0 || b.columns == 0) {
                    return Err(DomainError::InvalidField {
                        field: "cabinets",
                        reason: "every cabinet body needs at least one row and one column".into(),
                    });
                }
                CabinetEvent::Enrolled(e)
            }
            CabinetCommand::Activate(e) => CabinetEvent::Activated(e),
            CabinetCommand::Disable(e) => CabinetEvent::Disabled(e),
            CabinetCommand::RaiseAlarm(e) => CabinetEvent::AlarmRaised(e),
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }

    /// Refuses a drawer outside the enrolled geometry (`E_NO_SUCH_DRAWER`).
    pub fn check_drawer(&self, device: &str, drawer: &Drawer) -> Result<(), DomainError> {
        let fits = self.bodies.iter().any(|body| {
            body.serial == drawer.body
                && (1..=body.rows).contains(&drawer.row)
                && (1..=body.columns).contains(&drawer.column)
        });
        if fits {
            Ok(())
        } else {
            Err(DomainError::NoSuchDrawer {
                device: device.to_string(),
                body: drawer.body.clone(),
                row: drawer.row,
                column: drawer.column,
            })
        }
    }
}

impl Aggregate for Cabinet {
    const TYPE: &'static str = Cabinet::AGGREGATE;
    type Command = CabinetCommand;
    type Event = CabinetEvent;
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
            CabinetEvent::Enrolled(e) => {
                self.unit = Some(e.unit);
                self.model = Some(e.model);
                self.bodies = e.bodies;
                self.public_key_pem = Some(e.public_key_pem);
            }
            CabinetEvent::Activated(e) => self.administrators = e.administrators,
            CabinetEvent::Disabled(_) | CabinetEvent::AlarmRaised(_) => {}
        }
    }
}
