//! The cabinet's intakes: activation (`sjsb-sbcsh`), heartbeats (`sjsb-xt`), deposits and
//! withdrawals (`sjsb-zjcq`), cancellations (`sjsb-zjzx`) and alarms (`sjsb-gj`).

use chrono::NaiveDate;
use custody_commands::{Guarded, Outcome};
use custody_domain::cabinet::{Activated, Administrator, AlarmRaised, Cabinet, CabinetCommand};
use custody_domain::custody::Act;
use custody_domain::document::{
    AbnormalReason, AbnormalWithdrawal, ApprovalCheck, CancellationReason, Cancelled, DepositKind,
    Deposited, Document, DocumentCommand, WithdrawalKind, Withdrawn,
};
use custody_domain::identifiers::{BusinessSerial, DocumentId, PersonId, SerialKind};
use custody_domain::travel_approval::TravelApproval;
use custody_domain::values::{DocumentRecord, Drawer, Location, Timestamp};
use serde::Serialize;

use crate::custody::{holders_unit, judge_document};
use crate::{fingerprint, Application, ApplicationError, Intake, Principal};

/// `sjsb-sbcsh`: the device's own initialisation message.
#[derive(Debug, Clone)]
pub struct ActivationReport {
    /// `sbxlh`: must be the signing device.
    pub device: String,
    /// `tyshxydm`: must be the unit the device is enrolled for.
    pub unit: String,
    pub unit_name: String,
    pub contact: Option<String>,
    pub contact_phone: Option<String>,
    pub administrators: Vec<Administrator>,
}

/// What a `sjsb-zjcq` report asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum CabinetOperation {
    /// 11 / 12.
    Deposit { kind: DepositKind },
    /// 21 / 22.
    Withdraw {
        kind: WithdrawalKind,
        purpose: Option<String>,
        planned_return: Option<NaiveDate>,
        destination: Option<String>,
        /// `cgspywlsh` as sent: the travel approval a lend names, if any.
        travel_approval: Option<String>,
    },
    /// 23.
    WithdrawAbnormally { reason: AbnormalReason },
}

/// `sjsb-zjcq`: a deposit or withdrawal, its record read from the document itself.
#[derive(Debug, Clone)]
pub struct DocumentOperationReport {
    pub serial: BusinessSerial,
    /// `Deviceid`: must be the signing device.
    pub device: String,
    pub record: DocumentRecord,
    pub drawer: Drawer,
    pub operated_at: Timestamp,
    pub operation: CabinetOperation,
}

/// `sjsb-zjzx`.
#[derive(Debug, Clone, Serialize)]
pub struct CancellationReport {
    pub serial: BusinessSerial,
    pub document: DocumentId,
    pub reason: CancellationReason,
    pub proof: Option<String>,
}

/// `sjsb-gj`.
#[derive(Debug, Clone)]
pub struct AlarmReport {
    /// Alarms have no serial prefix of their own in the source.
    pub serial: String,
    /// `sbxlh`: must be the signing device.
    pub device: String,
    pub alarm: AlarmRaised,
}

impl Application {
    /// Activates the signing cabinet.
    pub async fn activate_cabinet(
        &self,
        intake: &Intake,
        report: ActivationReport,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        principal.check_device("sbxlh", &report.device)?;
        principal.check_unit("tyshxydm", &report.unit)?;
        let command = CabinetCommand::Activate(Activated {
            unit_name: report.unit_name,
            contact: report.contact,
            contact_phone: report.contact_phone,
            administrators: report.administrators,
            activated_at: intake.received_at,
        });
        Ok(self
            .commands
            .cabinet(
                &principal.sender,
                command,
                intake.metadata(None, None, None),
            )
            .await?)
    }

    /// Keeps the signing cabinet's latest heartbeat (status, not an event).
    pub async fn record_heartbeat(
        &self,
        intake: &Intake,
        device: &str,
        status_json: &str,
    ) -> Result<(), ApplicationError> {
        intake.principal.check_device("sbxlh", device)?;
        self.commands
            .log()
            .platform()
            .record_heartbeat(
                &intake.principal.sender,
                status_json,
                intake.received_at.timestamp_millis(),
            )
            .await?;
        Ok(())
    }

    /// A deposit or withdrawal reported by the cabinet that did it.
    pub async fn report_document_operation(
        &self,
        intake: &Intake,
        report: DocumentOperationReport,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        principal.check_device("Deviceid", &report.device)?;
        intake.not_ahead("optime", report.operated_at)?;
        if let Some(cabinet) = &principal.cabinet {
            cabinet.check_drawer(&principal.sender, &report.drawer)?;
        }
        let location = Location {
            unit: principal.own_unit()?.clone(),
            device: principal.device()?,
            drawer: report.drawer,
        };
        let document_id = report.record.document_id();
        let holder = report.record.holder_id();
        let (act, command) = match report.operation {
            CabinetOperation::Deposit { kind } => (
                Act::Deposit,
                DocumentCommand::Deposit(Deposited {
                    kind,
                    record: report.record.into(),
                    location,
                    operator: None,
                    operated_at: report.operated_at,
                }),
            ),
            CabinetOperation::Withdraw {
                kind,
                purpose,
                planned_return,
                destination,
                travel_approval,
            } => {
                // A lend needs a valid approval of the holder on the day it leaves the
                // cabinet; without one it is still recorded, and flagged (SPEC §3.3).
                let approval = match kind {
                    WithdrawalKind::Lend => {
                        self.lend_approval(
                            travel_approval.as_deref(),
                            &holder,
                            report.operated_at.date_naive(),
                        )
                        .await?
                    }
                    WithdrawalKind::TakeOut => ApprovalCheck::Missing,
                };
                (
                    Act::Withdraw,
                    DocumentCommand::Withdraw {
                        withdrawal: Withdrawn {
                            kind,
                            location,
                            operator: None,
                            operated_at: report.operated_at,
                            purpose,
                            planned_return,
                            destination,
                            travel_approval,
                            anomaly: None,
                        },
                        approval,
                    },
                )
            }
            CabinetOperation::WithdrawAbnormally { reason } => (
                Act::Withdraw,
                DocumentCommand::WithdrawAbnormally(AbnormalWithdrawal {
                    reason,
                    location,
                    operator: None,
                    operated_at: report.operated_at,
                }),
            ),
        };
        let content = operation_content(&command);
        let metadata = intake.metadata(
            Some(report.serial.as_str()),
            Some(report.serial.to_string()),
            Some(content),
        );
        self.guarded_document_command(
            principal,
            act,
            &document_id,
            Some(&holder),
            command,
            metadata,
        )
        .await
    }

    /// A cancellation: only of a document in the cabinet's own unit's custody.
    pub async fn report_cancellation(
        &self,
        intake: &Intake,
        report: CancellationReport,
    ) -> Result<Outcome, ApplicationError> {
        let metadata = intake.metadata(
            Some(report.serial.as_str()),
            Some(report.serial.to_string()),
            Some(fingerprint(&(
                &report.document,
                report.reason,
                &report.proof,
            ))),
        );
        let command = DocumentCommand::Cancel(Cancelled {
            reason: report.reason,
            proof: report.proof,
        });
        self.guarded_document_command(
            &intake.principal,
            Act::Cancel,
            &report.document,
            None,
            command,
            metadata,
        )
        .await
    }

    /// A device alarm of the signing cabinet.
    pub async fn raise_alarm(
        &self,
        intake: &Intake,
        report: AlarmReport,
    ) -> Result<Outcome, ApplicationError> {
        let principal = &intake.principal;
        principal.check_device("sbxlh", &report.device)?;
        intake.not_ahead("gjsj", report.alarm.raised_at)?;
        let metadata = intake.metadata(
            Some(&report.serial),
            Some(report.serial.clone()),
            Some(fingerprint(&report.alarm)),
        );
        Ok(self
            .commands
            .execute::<Cabinet>(
                &principal.sender,
                CabinetCommand::RaiseAlarm(report.alarm),
                metadata,
            )
            .await?)
    }

    /// Checks that the reminder pull (`sjfk-cjxx`) names the signing cabinet and its unit.
    pub fn authorise_reminder_pull(
        &self,
        principal: &Principal,
        device: &str,
        unit: &str,
    ) -> Result<(), ApplicationError> {
        principal.check_device("devid", device)?;
        principal.check_unit("orgid", unit)
    }

    /// The automatic repair of SPEC §6.1, for a document of the batch's own unit only.
    pub async fn repair_by_reconciliation(
        &self,
        intake: &Intake,
        document: &DocumentId,
        command: DocumentCommand,
        metadata: custody_domain::EventMetadata,
    ) -> Result<Outcome, ApplicationError> {
        self.guarded_document_command(
            &intake.principal,
            Act::ReconciliationRepair,
            document,
            None,
            command,
            metadata,
        )
        .await
    }

    /// Runs a document command under the custody policy, judged, purely, on the state the
    /// command is decided on, so that no write between a look-up and the commit can slip past
    /// it. The document is loaded first so that its holder's unit can be looked up; the first
    /// attempt decides on that same load (the append refuses it if another writer came first).
    async fn guarded_document_command(
        &self,
        principal: &Principal,
        act: Act,
        id: &DocumentId,
        holder: Option<&PersonId>,
        command: DocumentCommand,
        metadata: custody_domain::EventMetadata,
    ) -> Result<Outcome, ApplicationError> {
        let lookups: &custody_commands::Commands = &self.commands;
        let loaded = self
            .commands
            .load_for_command::<Document>(id.as_str())
            .await?;
        let holders_unit = holders_unit(lookups, loaded.aggregate(), holder).await?;
        let outcome = self
            .commands
            .execute_guarded_on::<Document, ApplicationError>(
                loaded,
                command,
                metadata,
                |document| judge_document(principal, act, id, document, holders_unit.as_ref()),
            )
            .await;
        match outcome {
            Ok(outcome) => Ok(outcome),
            Err(Guarded::Refused(refusal)) => Err(refusal),
            Err(Guarded::Command(error)) => Err(error.into()),
        }
    }

    /// Whether the travel approval a lend names covers it: a recorded approval of the
    /// document's holder, valid on the day of the withdrawal (China time). Anything else (no
    /// serial, a malformed or unknown one, another person's, expired or not yet valid) is
    /// `Missing`: the lend is still recorded, and flagged.
    async fn lend_approval(
        &self,
        serial: Option<&str>,
        holder: &PersonId,
        day: NaiveDate,
    ) -> Result<ApprovalCheck, ApplicationError> {
        let Some(Ok(serial)) = serial.map(str::parse::<BusinessSerial>) else {
            return Ok(ApprovalCheck::Missing);
        };
        if serial.kind() != SerialKind::TravelApproval {
            return Ok(ApprovalCheck::Missing);
        }
        let approval: TravelApproval = self.commands.load(serial.as_str()).await?;
        Ok(if approval.covers(holder, day) {
            ApprovalCheck::Valid
        } else {
            ApprovalCheck::Missing
        })
    }
}

/// The business content of a deposit or withdrawal: what the cabinet reported, not what the
/// platform judged of it (whether a named approval was valid may change between two sends).
fn operation_content(command: &DocumentCommand) -> String {
    match command {
        DocumentCommand::Deposit(deposit) => fingerprint(&("deposit", deposit)),
        DocumentCommand::Withdraw { withdrawal, .. } => fingerprint(&("withdraw", withdrawal)),
        DocumentCommand::WithdrawAbnormally(abnormal) => fingerprint(&("abnormal", abnormal)),
        other => fingerprint(&format!("{other:?}")),
    }
}
