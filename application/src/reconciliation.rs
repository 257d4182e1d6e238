//! `sjsb-dzsj`: a cabinet's nightly reconciliation batch (SPEC §6; docs/reconciliation.md).
//!
//! The batch is checked, then diffed against the platform's state at the end of its business
//! date, replayed from the event store, and the diff is recorded (Reconciliation
//! `BatchDiffed`). Then the one automatic repair of SPEC §6.1 runs on each document the diff
//! names (Document `ReconciliationCorrected`, through the custody policy), and the outcomes
//! close the reconciliation (`RepairsRecorded`). The same batch sent again finishes from the
//! stored diff, never from a recomputed one, so its result and its events are those of the
//! first time; the same serial with other content is refused like every reused serial.

use std::collections::{HashMap, HashSet};

use chrono::{Days, NaiveDate};
use custody_commands::{CommandError, Outcome};
use custody_domain::custody::{self, Act, Actor, Decision};
use custody_domain::document::{
    DepositKind, Document, DocumentCommand, DocumentEvent, ReconciliationCorrected, WithdrawalKind,
};
use custody_domain::identifiers::{BusinessSerial, CreditCode, DocumentId, PersonId};
use custody_domain::person::Person;
use custody_domain::reconciliation::{
    compare, end_of_business_date, log_deviations, replay_until, BatchDiffed, CabinetClaim,
    CabinetView, DeviationReason, LoggedOperation, PlatformOperation, Reconciliation,
    ReconciliationCommand, ReconciliationEventKind, ReconciliationState, ReconciliationWindow,
    RepairOutcome, RepairsRecorded, ReportedDocument, StateDeviation,
};
use custody_domain::transitions::Named;
use custody_domain::values::{china_standard_time, DeviceSerial, Timestamp};
use custody_domain::DomainError;
use custody_eventlog::{EventLogError, StoredEvent};
use serde::Serialize;

use crate::{fingerprint, keys, Application, ApplicationError, Intake};

/// A batch as the cabinet sent it, its fields read into domain types.
#[derive(Debug, Clone, Serialize)]
pub struct ReconciliationBatch {
    /// `dzywlsh`.
    pub serial: BusinessSerial,
    /// `sbxlh`: must be the signing device.
    pub device: String,
    /// `tyshxydm`: must be the unit the device is enrolled for.
    pub unit: String,
    /// `dzrq`.
    pub business_date: NaiveDate,
    /// `zjzt`: each document listed once.
    pub documents: Vec<ReportedDocument>,
    /// `czls`.
    pub operations: Vec<LoggedOperation>,
}

/// What the cabinet is answered: the reconciliation as stored, and whether this batch had been
/// taken before.
#[derive(Debug, Clone)]
pub struct ReconciliationAnswer {
    pub serial: BusinessSerial,
    pub duplicate: bool,
    pub reconciliation: Reconciliation,
}

impl Application {
    /// Diffs, records and repairs a cabinet's nightly batch (see the module's header).
    pub async fn reconcile(
        &self,
        intake: &Intake,
        batch: ReconciliationBatch,
    ) -> Result<ReconciliationAnswer, ApplicationError> {
        let principal = &intake.principal;
        let now = intake.received_at.with_timezone(&china_standard_time());
        let window = self.reconciliation_window;
        if !window.contains(now.time()) {
            return Err(ApplicationError::OutsideWindow(format!(
                "sjsb-dzsj is taken from {} to {} China time; the server clock says {}",
                window.opens.format("%H:%M"),
                window.closes.format("%H:%M"),
                now.format("%H:%M:%S")
            )));
        }
        principal.check_device("sbxlh", &batch.device)?;
        principal.check_unit("tyshxydm", &batch.unit)?;
        let date = batch.business_date;
        if date > now.date_naive() {
            return Err(ApplicationError::invalid(
                "dzrq",
                format!("{date} has not begun yet"),
            ));
        }
        if let Some(cabinet) = &principal.cabinet {
            for reported in &batch.documents {
                if let CabinetClaim::InCabinet(drawer) = &reported.claim {
                    cabinet.check_drawer(&principal.sender, drawer)?;
                }
            }
        }
        let device: DeviceSerial = principal.device()?;
        let unit: CreditCode = principal.own_unit()?.clone();
        let serial = batch.serial.clone();
        let content = fingerprint(&batch);

        let id = Reconciliation::id(&device, date);
        let mut reconciliation: Reconciliation = self.commands.load(&id).await?;
        let duplicate = match &reconciliation.diff {
            Some(diff) if diff.serial == serial => {
                self.check_same_content(serial.as_str(), &content).await?;
                true
            }
            Some(_) => {
                return Err(DomainError::IllegalTransition {
                    aggregate: Reconciliation::AGGREGATE,
                    current: reconciliation.state.name(),
                    event: ReconciliationEventKind::BatchDiffed.name(),
                }
                .into())
            }
            None => {
                let diff = self
                    .diff(&batch, &device, &unit, intake.received_at)
                    .await?;
                let outcome = self
                    .commands
                    .execute::<Reconciliation>(
                        &id,
                        ReconciliationCommand::RecordDiff(diff),
                        intake.metadata(
                            Some(serial.as_str()),
                            Some(serial.to_string()),
                            Some(content),
                        ),
                    )
                    .await?;
                // Whoever won, the stored diff is the one that counts from here on.
                reconciliation = self.commands.load(&id).await?;
                matches!(outcome, Outcome::Duplicate(_))
            }
        };
        if reconciliation.state == ReconciliationState::Diffed {
            let outcomes = self.repair(intake, &serial, &reconciliation).await?;
            self.commands
                .execute::<Reconciliation>(
                    &id,
                    ReconciliationCommand::RecordRepairs(RepairsRecorded { outcomes }),
                    intake.metadata(
                        Some(serial.as_str()),
                        Some(keys::repairs(serial.as_str())),
                        None,
                    ),
                )
                .await?;
            reconciliation = self.commands.load(&id).await?;
        }
        // The stored diff keeps no names (docs/personal-data.md); the cabinet's answer does.
        if let Some(diff) = reconciliation.diff.as_mut() {
            let mut documents = HashMap::new();
            for deviation in &diff.state_deviations {
                let id = deviation.document.as_str();
                if !documents.contains_key(id) {
                    documents.insert(id.to_string(), self.commands.load::<Document>(id).await?);
                }
            }
            self.name_holders(&documents, &mut diff.state_deviations)
                .await?;
        }
        Ok(ReconciliationAnswer {
            serial,
            duplicate,
            reconciliation,
        })
    }

    /// Refuses a batch re-sent under a serial already diffed with other content, as the command
    /// service refuses any reused serial (docs/protocol.md, "Idempotency"); a diff recorded
    /// before content was fingerprinted compares by serial alone.
    async fn check_same_content(
        &self,
        serial: &str,
        content: &str,
    ) -> Result<(), ApplicationError> {
        let stored = self.commands.log().find_by_idempotency_key(serial).await?;
        match stored.and_then(|event| event.content_sm3) {
            Some(stored) if stored != content => Err(CommandError::ContentDiffers {
                key: serial.to_string(),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Diffs a batch against the platform's state at the end of its business date.
    async fn diff(
        &self,
        batch: &ReconciliationBatch,
        device: &DeviceSerial,
        unit: &CreditCode,
        received_at: Timestamp,
    ) -> Result<BatchDiffed, ApplicationError> {
        let log = self.commands.log();
        let date = batch.business_date;
        let as_of = end_of_business_date(date)
            .ok_or_else(|| ApplicationError::invalid("dzrq", format!("no day after {date}")))?;
        let on_the_day =
            |t: &Timestamp| t.with_timezone(&china_standard_time()).date_naive() == date;

        // What the platform recorded from this cabinet on the day. A report reaches the
        // platform after the operation; starting a day early covers clocks that disagree.
        let since = as_of.checked_sub_days(Days::new(2)).unwrap_or(as_of);
        let mut platform_ops = Vec::new();
        let mut sent = log
            .events_sent_since(device.as_str(), Document::AGGREGATE, since)
            .await?;
        log.open_personal_data(&mut sent).await?;
        for stored in &sent {
            let decoded = decode(stored)?;
            let (Some((operation, operated_at)), Some(serial)) =
                (operation(&decoded), decoded.serial.clone())
            else {
                continue;
            };
            if on_the_day(&operated_at) {
                platform_ops.push(PlatformOperation {
                    serial,
                    operation: operation.to_string(),
                    operated_at,
                    document: decoded
                        .document
                        .parse()
                        .map_err(|e| corrupt("document id", e))?,
                });
            }
        }

        // The platform's state of every document the batch or the day's operations name.
        let mut candidates: Vec<&str> = batch
            .documents
            .iter()
            .map(|r| r.document.as_str())
            .collect();
        candidates.extend(platform_ops.iter().map(|op| op.document.as_str()));
        candidates.sort_unstable();
        candidates.dedup();
        let mut histories: HashMap<String, Vec<(DocumentEvent, Timestamp)>> = HashMap::new();
        let mut candidate_events = log.events_of_many(Document::AGGREGATE, &candidates).await?;
        log.open_personal_data(&mut candidate_events).await?;
        for stored in &candidate_events {
            let decoded = decode(stored)?;
            histories
                .entry(decoded.document)
                .or_default()
                .push((decoded.event, decoded.recorded_at));
        }
        let documents: HashMap<String, Document> = histories
            .into_iter()
            .map(|(id, events)| (id, replay_until(events, as_of)))
            .collect();
        let platform = |id: &DocumentId| documents.get(id.as_str()).cloned().unwrap_or_default();

        let mut deviations = Vec::new();
        for reported in &batch.documents {
            let document = platform(&reported.document);
            let Some((mut reason, mut repair)) = compare(reported, &document, device, unit) else {
                continue;
            };
            // Another unit's document is a deviation for operators, never a repair
            // (docs/custody.md).
            let whereabouts = custody::document_whereabouts(&document, None, unit, Some(device));
            let decision = custody::judge(Actor::Cabinet, Act::ReconciliationRepair, whereabouts);
            if repair.is_some() && decision == Decision::NotCustodian {
                reason = DeviationReason::OtherUnitsDocument;
                repair = None;
            }
            let (cabinet_state, cabinet_drawer) = match &reported.claim {
                CabinetClaim::InCabinet(drawer) => (CabinetView::InCabinet, Some(drawer.clone())),
                CabinetClaim::Out => (CabinetView::Out, None),
            };
            deviations.push(StateDeviation {
                document: reported.document.clone(),
                holder: Some(reported.holder.clone()),
                holder_name: None,
                unit: document.unit.clone().or_else(|| Some(unit.clone())),
                cabinet_state,
                cabinet_drawer,
                platform_state: document.state,
                platform_location: document.location.clone(),
                reason,
                repair,
            });
        }
        // Documents the cabinet operated on that day (by the platform's record) but did not
        // list.
        let listed: HashSet<&DocumentId> = batch.documents.iter().map(|r| &r.document).collect();
        let mut unlisted: Vec<(&Timestamp, &DocumentId)> = platform_ops
            .iter()
            .filter(|op| !listed.contains(&op.document))
            .map(|op| (&op.operated_at, &op.document))
            .collect();
        unlisted.sort();
        let mut done = HashSet::new();
        for (_, id) in unlisted {
            if !done.insert(id) {
                continue;
            }
            let document = platform(id);
            deviations.push(StateDeviation {
                document: id.clone(),
                holder: document.holder.clone(),
                holder_name: None,
                unit: document.unit.clone().or_else(|| Some(unit.clone())),
                cabinet_state: CabinetView::NotReported,
                cabinet_drawer: None,
                platform_state: document.state,
                platform_location: document.location.clone(),
                reason: DeviationReason::NotReported,
                repair: None,
            });
        }
        self.name_holders(&documents, &mut deviations).await?;

        // The operation log: which of the cabinet's serials the platform holds, and which
        // reports of the others it refused.
        let serials: Vec<&str> = batch.operations.iter().map(|l| l.serial.as_str()).collect();
        let held = log.idempotency_keys_among(&serials).await?;
        let unheld: Vec<&str> = serials
            .iter()
            .copied()
            .filter(|s| !held.contains(*s))
            .collect();
        let refused = log.platform().latest_refusals(&unheld).await?;
        let log_deviations = log_deviations(&batch.operations, &platform_ops, &held, &refused);

        Ok(BatchDiffed {
            serial: batch.serial.clone(),
            device: device.clone(),
            unit: unit.clone(),
            business_date: date,
            received_at,
            as_of,
            documents_reported: u32::try_from(batch.documents.len()).unwrap_or(u32::MAX),
            operations_reported: u32::try_from(batch.operations.len()).unwrap_or(u32::MAX),
            state_deviations: deviations,
            log_deviations,
        })
    }

    /// The holder's name of each deviation: from the document's own record, else from the
    /// filed person.
    async fn name_holders(
        &self,
        documents: &HashMap<String, Document>,
        deviations: &mut [StateDeviation],
    ) -> Result<(), ApplicationError> {
        let mut persons: HashMap<PersonId, Option<String>> = HashMap::new();
        for deviation in deviations.iter_mut() {
            let recorded = documents
                .get(deviation.document.as_str())
                .and_then(|d| d.record.as_ref())
                .filter(|r| Some(r.holder_id()) == deviation.holder)
                .map(|r| r.chinese_name.clone());
            deviation.holder_name = match (recorded, &deviation.holder) {
                (Some(name), _) => Some(name),
                (None, Some(holder)) => {
                    if !persons.contains_key(holder) {
                        let person: Person = self.commands.load(holder.as_str()).await?;
                        persons.insert(holder.clone(), person.details.map(|d| d.name));
                    }
                    persons.get(holder).cloned().flatten()
                }
                (None, None) => None,
            };
        }
        Ok(())
    }

    /// Runs each planned repair; a document that moved since the end of the business date
    /// keeps its newer state, and the repair is recorded as not made, with the reason.
    async fn repair(
        &self,
        intake: &Intake,
        serial: &BusinessSerial,
        reconciliation: &Reconciliation,
    ) -> Result<Vec<RepairOutcome>, ApplicationError> {
        let mut outcomes = Vec::new();
        for (document, location) in reconciliation.planned_repairs() {
            let command = DocumentCommand::CorrectByReconciliation(ReconciliationCorrected {
                reconciliation_serial: serial.to_string(),
                location: location.clone(),
            });
            let key = keys::repair(serial.as_str(), document.as_str());
            let outcome = self
                .repair_by_reconciliation(
                    intake,
                    document,
                    command,
                    intake.metadata(Some(serial.as_str()), Some(key), None),
                )
                .await;
            let not_made = |refusal: &ApplicationError| RepairOutcome {
                document: document.clone(),
                repaired: false,
                note: Some(refusal.to_string()),
            };
            outcomes.push(match outcome {
                Ok(_) => RepairOutcome {
                    document: document.clone(),
                    repaired: true,
                    note: None,
                },
                Err(
                    refusal @ ApplicationError::Command(CommandError::Domain(
                        DomainError::IllegalTransition { .. },
                    )),
                ) => not_made(&refusal),
                // The document passed to another unit's custody since the diff: not repaired.
                Err(refusal @ ApplicationError::NotCustodian { .. }) => not_made(&refusal),
                Err(other) => return Err(other),
            });
        }
        Ok(outcomes)
    }
}

/// A stored document event, decoded, with its recorded time and business serial.
struct Decoded {
    document: String,
    event: DocumentEvent,
    recorded_at: Timestamp,
    serial: Option<String>,
}

fn decode(stored: &StoredEvent) -> Result<Decoded, ApplicationError> {
    let event: DocumentEvent =
        serde_json::from_value(stored.payload.clone()).map_err(EventLogError::from)?;
    let recorded_at = stored.metadata["recorded_at"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| corrupt("event metadata", "no recorded_at"))?;
    Ok(Decoded {
        document: stored.aggregate_id.clone(),
        event,
        recorded_at,
        serial: stored.metadata["ywlsh"].as_str().map(str::to_string),
    })
}

/// A stored event that does not read as the platform wrote it: the store's failure, not the
/// sender's.
fn corrupt(what: &str, error: impl std::fmt::Display) -> ApplicationError {
    let error = <serde_json::Error as serde::de::Error>::custom(format!("{what}: {error}"));
    EventLogError::Corrupt(error).into()
}

/// The operation a cabinet's document event records, and when, by the cabinet's clock.
fn operation(decoded: &Decoded) -> Option<(&'static str, Timestamp)> {
    match &decoded.event {
        DocumentEvent::Deposited(e) => Some((
            match e.kind {
                DepositKind::New => "deposit_new",
                DepositKind::Return => "deposit_return",
            },
            e.operated_at,
        )),
        DocumentEvent::Withdrawn(e) => Some((
            match e.kind {
                WithdrawalKind::Lend => "lend",
                WithdrawalKind::TakeOut => "take_out",
            },
            e.operated_at,
        )),
        DocumentEvent::AbnormalWithdrawal(e) => Some(("abnormal_withdrawal", e.operated_at)),
        // A cancellation keeps no operation time of its own.
        DocumentEvent::Cancelled(_) => Some(("cancellation", decoded.recorded_at)),
        _ => None,
    }
}

impl Application {
    /// Takes `sjsb-dzsj` only inside `window` (default 20:00 to 06:00 China time).
    pub fn with_reconciliation_window(mut self, window: ReconciliationWindow) -> Self {
        self.reconciliation_window = window;
        self
    }

    pub fn reconciliation_window(&self) -> ReconciliationWindow {
        self.reconciliation_window
    }
}
