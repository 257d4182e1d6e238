//! The cabinet's messages at the wire: bdata fields become domain types here (refused with a
//! precise code when they do not parse), then one use case of the application layer runs.

use std::sync::Arc;

use custody_application::cabinet::{
    ActivationReport, AlarmReport, CabinetOperation, CancellationReport, DocumentOperationReport,
};
use custody_application::Intake;
use custody_commands::Outcome;
use custody_domain::cabinet::{Administrator, AlarmRaised};
use custody_domain::document::{AbnormalReason, CancellationReason, DepositKind, WithdrawalKind};
use custody_domain::identifiers::{DocumentId, SerialKind};
use custody_domain::values::{DocumentRecord, Drawer};
use custody_protocol::{EnvelopeOpener, SignedRequest};
use serde_json::Value;

use super::fields::{
    business_data, business_date, business_time, invalid, open_envelope, optional,
    optional_country, optional_text, required, serial_of, text,
};

/// A text field that may be empty, with the rules of every text field.
fn plain(field: &'static str, value: &str, max_chars: usize) -> Result<String, WireError> {
    Ok(optional_text(field, value, max_chars)?.unwrap_or_default())
}
use super::messages::{self, MessageType};
use super::reply::{Received, Reply};
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

pub async fn handle(
    state: &AppState,
    message: MessageType,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    match message {
        MessageType::CabinetInit => activate(state, intake, request).await,
        MessageType::Heartbeat => heartbeat(state, intake, request, received).await,
        MessageType::DocumentOperation => document_operation(state, intake, request).await,
        MessageType::Cancellation => cancellation(state, intake, request).await,
        MessageType::Alarm => alarm(state, intake, request).await,
        MessageType::Reconciliation => super::reconciliation::handle(state, intake, request).await,
        MessageType::ReminderPull => reminder_pull(state, intake, request, received).await,
        other => Err(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{other:?} is not a cabinet message"),
        )),
    }
}

fn reply(serial: &str, outcome: Outcome) -> Reply {
    Reply::new(serial, matches!(outcome, Outcome::Duplicate(_)))
}

async fn activate(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let report = activation_report(request)?;
    state.application.activate_cabinet(intake, report).await?;
    // The registry is the edge's cache of who may sign what: it learns of the activation now.
    state
        .registry
        .refresh_cabinet(&state.commands, &intake.principal.sender)
        .await
        .map_err(|e| WireError::internal("refreshing the sender registry", e))?;
    Ok(Reply::new("", false))
}

/// sjsb-sbcsh's bdata as the use case's report.
pub(super) fn activation_report(request: &SignedRequest) -> Result<ActivationReport, WireError> {
    let init: messages::CabinetInit = business_data(request)?;
    Ok(ActivationReport {
        device: init.sbxlh,
        unit: init.tyshxydm,
        unit_name: plain("dwmc", &init.dwmc, 200)?,
        contact: optional_text("gzlxr", &init.gzlxr, 64)?,
        contact_phone: optional_text("gzlxdh", &init.gzlxdh, 32)?,
        administrators: init
            .glylb
            .into_iter()
            .map(|a| Administrator {
                account: a.glyzh,
                person: a.rybs,
            })
            .collect(),
    })
}

async fn heartbeat(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let (device, status) = heartbeat_status(request)?;
    state
        .application
        .record_heartbeat(intake, &device, &status)
        .await?;
    let mut reply = Reply::new("", false);
    // Clock calibration for the device; no firmware upgrade and no alarm-configuration change
    // are offered by this service.
    reply.extra.insert(
        "szjzxx".into(),
        received.now.format("%Y%m%d%H%M%S").to_string().into(),
    );
    reply.extra.insert("ksjbbh".into(), "".into());
    reply.extra.insert("gjpzgbz".into(), 0.into());
    Ok(reply)
}

/// sjsb-xt's bdata: the device serial, and the whole status as JSON text.
pub(super) fn heartbeat_status(request: &SignedRequest) -> Result<(String, String), WireError> {
    let beat: messages::Heartbeat = business_data(request)?;
    let status: Value = business_data(request)?;
    Ok((beat.sbxlh, status.to_string()))
}

async fn document_operation(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    // The envelope is opened on the crypto pool: it is most of this report's CPU.
    let platform_key = Arc::clone(&state.platform_key);
    let request = request.clone();
    let report = state
        .crypto
        .run(move || document_operation_report(&platform_key.opener, &request))
        .await??;
    let serial = report.serial.clone();
    let outcome = state
        .application
        .report_document_operation(intake, report)
        .await?;
    Ok(reply(serial.as_str(), outcome))
}

/// sjsb-zjcq's bdata as the use case's report, `zjdata` opened with `opener`.
pub(super) fn document_operation_report(
    opener: &EnvelopeOpener,
    request: &SignedRequest,
) -> Result<DocumentOperationReport, WireError> {
    let report: messages::DocumentOperation = business_data(request)?;
    let serial_kind = match report.optype.as_str() {
        "11" | "12" => SerialKind::Deposit,
        "21" | "22" | "23" => SerialKind::Withdrawal,
        other => {
            return Err(invalid(
                "optype",
                format!("{other:?} is not 11, 12, 21, 22 or 23"),
            ))
        }
    };
    let serial = serial_of("ywlsh", serial_kind, &report.ywlsh)?;
    let operated_at = business_time("optime", &report.optime)?;
    let record = open_record(opener, &report.zjdata)?;
    let drawer = Drawer {
        body: required("ZZGSN", &report.cabinet_body)?.to_string(),
        row: report.row,
        column: report.column,
    };
    let operation = match report.optype.as_str() {
        "11" => CabinetOperation::Deposit {
            kind: DepositKind::New,
        },
        "12" => CabinetOperation::Deposit {
            kind: DepositKind::Return,
        },
        "21" | "22" => {
            let lend = report.optype == "21";
            let planned_return = match (lend, report.retdate.as_str()) {
                (true, date) => Some(business_date("retdate", date)?),
                (false, "") => None,
                (false, date) => Some(business_date("retdate", date)?),
            };
            CabinetOperation::Withdraw {
                kind: if lend {
                    WithdrawalKind::Lend
                } else {
                    WithdrawalKind::TakeOut
                },
                purpose: optional_text("qzyt", &report.qzyt, 200)?,
                planned_return,
                destination: optional_country("mdd", &report.mdd)?,
                travel_approval: optional(&report.cgspywlsh),
            }
        }
        _ => CabinetOperation::WithdrawAbnormally {
            reason: match required("ycyy", &report.ycyy)? {
                "chip_unreadable" => AbnormalReason::ChipUnreadable,
                "missing" => AbnormalReason::Missing,
                "invalid" => AbnormalReason::Invalid,
                other => {
                    return Err(invalid(
                        "ycyy",
                        format!("{other:?} is not chip_unreadable, missing or invalid"),
                    ))
                }
            },
        },
    };
    Ok(DocumentOperationReport {
        serial,
        device: report.device_id,
        record,
        drawer,
        operated_at,
        operation,
    })
}

/// Opens `zjdata` with the platform key and reads the document record from it.
fn open_record(opener: &EnvelopeOpener, zjdata: &str) -> Result<DocumentRecord, WireError> {
    let plaintext = open_envelope(opener, "zjdata", zjdata)?;
    let raw = custody_protocol::DocumentRecord::parse(&plaintext)
        .map_err(|e| WireError::new(ErrorCode::BadRecord, format!("zjdata record: {e}")))?;
    Ok(DocumentRecord {
        document_type: raw.document_type.parse().map_err(|e| invalid("ZJLX", e))?,
        number: raw
            .document_number
            .parse()
            .map_err(|e| invalid("ZJHM", e))?,
        citizen_id: raw
            .citizen_id_number
            .parse()
            .map_err(|e| invalid("GMSFHM", e))?,
        chinese_name: raw.chinese_name.clone(),
        latin_name: raw.latin_name.clone(),
        birth_date: business_date("CSRQ", &raw.birth_date)?,
        sex: raw.sex.parse().map_err(|e| invalid("XB", e))?,
        valid_until: business_date("YXQZ", &raw.expiry_date)?,
    })
}

async fn cancellation(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let report = cancellation_report(request)?;
    let serial = report.serial.clone();
    let outcome = state
        .application
        .report_cancellation(intake, report)
        .await?;
    Ok(reply(serial.as_str(), outcome))
}

/// sjsb-zjzx's bdata as the use case's report.
pub(super) fn cancellation_report(
    request: &SignedRequest,
) -> Result<CancellationReport, WireError> {
    let report: messages::Cancellation = business_data(request)?;
    let serial = serial_of("ywlsh", SerialKind::Cancellation, &report.ywlsh)?;
    let document: DocumentId = required("zjbs", &report.zjbs)?
        .parse()
        .map_err(|e| invalid("zjbs", e))?;
    let reason = match required("zxyy", &report.zxyy)? {
        "lost" => CancellationReason::Lost,
        "damaged" => CancellationReason::Damaged,
        "expired" => CancellationReason::Expired,
        "left_unit" => CancellationReason::LeftUnit,
        other => {
            return Err(invalid(
                "zxyy",
                format!("{other:?} is not lost, damaged, expired or left_unit"),
            ))
        }
    };
    Ok(CancellationReport {
        serial,
        document,
        reason,
        proof: optional_text("zmwjqm", &report.zmwjqm, 4096)?,
    })
}

async fn alarm(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let report = alarm_report(request)?;
    let serial = report.serial.clone();
    let outcome = state.application.raise_alarm(intake, report).await?;
    Ok(reply(&serial, outcome))
}

/// sjsb-gj's bdata as the use case's report.
pub(super) fn alarm_report(request: &SignedRequest) -> Result<AlarmReport, WireError> {
    let report: messages::Alarm = business_data(request)?;
    // Alarms have no serial prefix of their own in the source; any 1 to 64 letters and digits.
    let serial = required("ywlsh", &report.ywlsh)?;
    if serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid("ywlsh", "1 to 64 letters or digits"));
    }
    let alarm = AlarmRaised {
        kind: text("gjlx", &report.gjlx, 64)?,
        content: plain("gjnr", &report.gjnr, 1000)?,
        raised_at: business_time("gjsj", &report.gjsj)?,
    };
    Ok(AlarmReport {
        serial: serial.to_string(),
        device: report.sbxlh,
        alarm,
    })
}

/// sjfk-cjxx: the open reminders of the cabinet's unit, each `{zjbs, rybs, zjlx, yqts, cjlx}`
/// with `yqts` the overdue days today (China time, never negative) and `cjlx` `overdue` or
/// `entered`. A document may be brought back to any cabinet of its unit, so every cabinet of the
/// unit lists all of them. Nothing is appended.
async fn reminder_pull(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let (device, unit) = reminder_pull_names(request)?;
    let (device, unit) = (device.as_str(), unit.as_str());
    state
        .application
        .authorise_reminder_pull(&intake.principal, device, unit)?;
    let today = received
        .now
        .with_timezone(&custody_domain::values::china_standard_time())
        .date_naive();
    let open = state
        .processes
        .open_reminders(Some(unit))
        .await
        .map_err(crate::overdue::process_error)?;
    let reminders: Vec<Value> = open
        .iter()
        .map(|r| {
            serde_json::json!({
                "zjbs": r.details.document.as_str(),
                "rybs": r.details.holder.as_ref().map(|h| h.as_str()).unwrap_or_default(),
                "zjlx": r.details.document_type.map(|t| t.code()).unwrap_or_default(),
                "yqts": r.overdue_days(today),
                "cjlx": r.details.kind.code(),
            })
        })
        .collect();
    let mut reply = Reply::new("", false);
    reply.extra.insert("cjxx".into(), Value::Array(reminders));
    Ok(reply)
}

/// sjfk-cjxx's bdata: the cabinet (`devid`) and its unit (`orgid`), both required.
pub(super) fn reminder_pull_names(request: &SignedRequest) -> Result<(String, String), WireError> {
    let pull: messages::ReminderPull = business_data(request)?;
    let device = required("devid", &pull.devid)?;
    let unit = required("orgid", &pull.orgid)?;
    Ok((device.to_string(), unit.to_string()))
}
