use std::collections::HashSet;

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::commands::ReconciliationCommand;
use super::events::*;
use super::state::{ReconciliationState, TRANSITIONS};
use crate::identifiers::DocumentId;
use crate::transitions::{next_state, require};
use crate::values::{DeviceSerial, Location};
use crate::DomainError;

/// One cabinet's reconciliation of one business date, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconciliation {
    pub state: ReconciliationState,
    pub diff: Option<BatchDiffed>,
    pub repairs: Option<RepairsRecorded>,
}

impl Reconciliation {
    pub const AGGREGATE: &'static str = "Reconciliation";

    /// The aggregate id: `<sbxlh>:<YYYYMMDD>`, one reconciliation per cabinet and date.
    pub fn id(device: &DeviceSerial, business_date: NaiveDate) -> String {
        format!("{device}:{}", business_date.format("%Y%m%d"))
    }

    /// Judges a command against the current state: the one event it yields, or why not.
    pub fn decide(
        &self,
        command: ReconciliationCommand,
    ) -> Result<ReconciliationEvent, DomainError> {
        let event = match command {
            ReconciliationCommand::RecordDiff(diff) => {
                let mut seen = HashSet::new();
                for deviation in &diff.state_deviations {
                    if !seen.insert(&deviation.document) {
                        return Err(DomainError::InvalidField {
                            field: "zjzt",
                            reason: format!("document {} is listed twice", deviation.document),
                        });
                    }
                    // SPEC §6.1: nothing but "in cabinet" against Withdrawn / AwaitingReturn
                    // is ever changed by the platform itself.
                    if deviation.repair.is_some()
                        && deviation.reason != DeviationReason::OutOnPlatform
                    {
                        return Err(DomainError::InvalidField {
                            field: "repair",
                            reason: format!(
                                "document {}: only a document the cabinet holds and the \
                                 platform has out is repaired",
                                deviation.document
                            ),
                        });
                    }
                }
                ReconciliationEvent::BatchDiffed(diff)
            }
            ReconciliationCommand::RecordRepairs(repairs) => {
                let planned: Vec<&DocumentId> =
                    self.planned_repairs().into_iter().map(|(d, _)| d).collect();
                let reported: Vec<&DocumentId> =
                    repairs.outcomes.iter().map(|o| &o.document).collect();
                if self.state == ReconciliationState::Diffed && planned != reported {
                    return Err(DomainError::InvalidField {
                        field: "repairs",
                        reason: "the outcomes must name exactly the planned repairs, in order"
                            .into(),
                    });
                }
                ReconciliationEvent::RepairsRecorded(repairs)
            }
        };
        require(TRANSITIONS, Self::AGGREGATE, self.state, event.kind())?;
        Ok(event)
    }

    /// The repairs the diff planned, in its order: the document and where it goes back.
    pub fn planned_repairs(&self) -> Vec<(&DocumentId, &Location)> {
        self.diff
            .iter()
            .flat_map(|diff| &diff.state_deviations)
            .filter_map(|d| d.repair.as_ref().map(|to| (&d.document, to)))
            .collect()
    }

    /// Whether the document's deviation was repaired (only a planned repair can be).
    pub fn repaired(&self, document: &DocumentId) -> bool {
        self.outcome(document).is_some_and(|o| o.repaired)
    }

    /// What became of the planned repair of `document`, once recorded.
    pub fn outcome(&self, document: &DocumentId) -> Option<&RepairOutcome> {
        self.repairs
            .as_ref()?
            .outcomes
            .iter()
            .find(|o| &o.document == document)
    }
}

impl Aggregate for Reconciliation {
    const TYPE: &'static str = Reconciliation::AGGREGATE;
    type Command = ReconciliationCommand;
    type Event = ReconciliationEvent;
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
            ReconciliationEvent::BatchDiffed(e) => self.diff = Some(e),
            ReconciliationEvent::RepairsRecorded(e) => self.repairs = Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::document::DocumentState;
    use crate::test_support::location;

    fn deviation(n: u8, reason: DeviationReason, repair: bool) -> StateDeviation {
        StateDeviation {
            document: format!("{n:064x}").parse().expect("zjbs"),
            holder: None,
            holder_name: None,
            unit: None,
            cabinet_state: CabinetView::InCabinet,
            cabinet_drawer: Some(location().drawer),
            platform_state: DocumentState::Withdrawn,
            platform_location: None,
            reason,
            repair: repair.then(location),
        }
    }

    fn diff(state_deviations: Vec<StateDeviation>) -> BatchDiffed {
        let at = DateTime::parse_from_rfc3339("2026-11-23T21:00:00+08:00").expect("time");
        BatchDiffed {
            serial: format!("DZ000001{}000001{}", "20261123210000", "0".repeat(32))
                .parse()
                .expect("serial"),
            device: location().device,
            unit: location().unit,
            business_date: at.date_naive(),
            received_at: at,
            as_of: at,
            documents_reported: 2,
            operations_reported: 0,
            state_deviations,
            log_deviations: vec![],
        }
    }

    fn applied(events: Vec<ReconciliationEvent>) -> Reconciliation {
        let mut r = Reconciliation::default();
        for e in events {
            r.apply(e);
        }
        r
    }

    #[test]
    fn a_diff_then_its_repairs_then_nothing() {
        let fresh = Reconciliation::default();
        let planned = diff(vec![
            deviation(1, DeviationReason::OutOnPlatform, true),
            deviation(2, DeviationReason::UnknownDocument, false),
        ]);
        let diffed = applied(vec![fresh
            .decide(ReconciliationCommand::RecordDiff(planned.clone()))
            .expect("diff")]);
        assert_eq!(diffed.state, ReconciliationState::Diffed);
        assert_eq!(diffed.planned_repairs().len(), 1);
        let wrong = RepairsRecorded { outcomes: vec![] };
        assert!(matches!(
            diffed.decide(ReconciliationCommand::RecordRepairs(wrong)),
            Err(DomainError::InvalidField {
                field: "repairs",
                ..
            })
        ));
        let outcome = RepairOutcome {
            document: planned.state_deviations[0].document.clone(),
            repaired: true,
            note: None,
        };
        let event = diffed
            .decide(ReconciliationCommand::RecordRepairs(RepairsRecorded {
                outcomes: vec![outcome.clone()],
            }))
            .expect("repairs");
        let mut done = diffed.clone();
        done.apply(event);
        assert_eq!(done.state, ReconciliationState::Reconciled);
        assert_eq!(done.outcome(&outcome.document), Some(&outcome));
        assert!(matches!(
            done.decide(ReconciliationCommand::RecordDiff(planned)),
            Err(DomainError::IllegalTransition {
                current: "Reconciled",
                ..
            })
        ));
    }

    #[test]
    fn only_the_spec_repair_is_planned_and_a_document_once() {
        let fresh = Reconciliation::default();
        let sneaky = diff(vec![deviation(1, DeviationReason::LocationMismatch, true)]);
        assert!(matches!(
            fresh.decide(ReconciliationCommand::RecordDiff(sneaky)),
            Err(DomainError::InvalidField {
                field: "repair",
                ..
            })
        ));
        let twice = diff(vec![
            deviation(1, DeviationReason::UnknownDocument, false),
            deviation(1, DeviationReason::UnknownDocument, false),
        ]);
        assert!(matches!(
            fresh.decide(ReconciliationCommand::RecordDiff(twice)),
            Err(DomainError::InvalidField { field: "zjzt", .. })
        ));
    }
}
