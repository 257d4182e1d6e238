//! What each cabinet message does: wire fields become domain types here (refused with a precise
//! code when they do not parse), then one command runs through the application service.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use custody_commands::Outcome;
use custody_domain::cabinet::{Activated, Administrator, AlarmRaised, CabinetCommand};
use custody_domain::document::{
    AbnormalReason, ApprovalCheck, CancellationReason, Cancelled, DepositKind, Deposited,
    DocumentCommand, WithdrawalKind, Withdrawn,
};
use custody_domain::identifiers::{BusinessSerial, DocumentId, SerialKind};
use custody_domain::values::{china_standard_time, DocumentRecord, Drawer, Location};
use custody_domain::EventMetadata;
use custody_protocol::{EnvelopeError, SignedRequest};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ingress::{Received, Reply};
use super::messages::{self, MessageType};
use crate::error::{ErrorCode, WireError};
use crate::registry::Sender;
use crate::server::AppState;

pub async fn handle(
    state: &AppState,
    message: MessageType,
    sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    match message {
        MessageType::CabinetInit => activate(state, sender, request, received).await,
        MessageType::Heartbeat => heartbeat(state, sender, request, received).await,
        MessageType::DocumentOperation => {
            document_operation(state, sender, request, received).await
        }
        MessageType::Cancellation => cancellation(state, sender, request, received).await,
        MessageType::Alarm => alarm(state, sender, request, received).await,
    }
}

fn business_data<T: DeserializeOwned>(request: &SignedRequest) -> Result<T, WireError> {
    request
        .business_data()
        .map_err(|e| WireError::new(ErrorCode::Malformed, e.to_string()))
}

/// The metadata of the event a report yields, keyed by its business serial when it has one.
fn metadata(
    request: &SignedRequest,
    received: &Received<'_>,
    serial: Option<&str>,
) -> EventMetadata {
    EventMetadata {
        business_serial: serial.map(str::to_string),
        idempotency_key: serial.map(str::to_string),
        sender: request.c.ei.clone(),
        request_id: Some(request.c.reqid.clone()),
        envelope_sm3: Some(received.body_sm3.clone()),
        recorded_at: Some(received.now),
    }
}

fn reply(serial: &str, outcome: Outcome) -> Reply {
    Reply::new(serial, matches!(outcome, Outcome::Duplicate(_)))
}

fn same_device(field: &str, named: &str, sender: &Sender) -> Result<(), WireError> {
    if named == sender.ei {
        Ok(())
    } else {
        Err(WireError::new(
            ErrorCode::SenderMismatch,
            format!(
                "{field} {named:?} is not the signing device {:?}",
                sender.ei
            ),
        ))
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidField, format!("{field}: {reason}"))
}

fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, WireError> {
    if value.is_empty() {
        Err(WireError::new(
            ErrorCode::MissingField,
            format!("{field} is empty"),
        ))
    } else {
        Ok(value)
    }
}

/// `YYYYMMDDHHMMSS` in China Standard Time.
fn business_time(field: &str, value: &str) -> Result<DateTime<FixedOffset>, WireError> {
    NaiveDateTime::parse_from_str(required(field, value)?, "%Y%m%d%H%M%S")
        .ok()
        .and_then(|t| t.and_local_timezone(china_standard_time()).single())
        .ok_or_else(|| invalid(field, format!("{value:?} is not YYYYMMDDHHMMSS")))
}

/// `YYYYMMDD`.
fn business_date(field: &str, value: &str) -> Result<NaiveDate, WireError> {
    NaiveDate::parse_from_str(required(field, value)?, "%Y%m%d")
        .map_err(|_| invalid(field, format!("{value:?} is not YYYYMMDD")))
}

fn serial_of(kind: SerialKind, value: &str) -> Result<BusinessSerial, WireError> {
    let serial: BusinessSerial = required("ywlsh", value)?
        .parse()
        .map_err(|e| invalid("ywlsh", e))?;
    if serial.kind() != kind {
        return Err(invalid(
            "ywlsh",
            format!("this operation's serial starts with {}", kind.prefix()),
        ));
    }
    Ok(serial)
}

fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

async fn activate(
    state: &AppState,
    sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let init: messages::CabinetInit = business_data(request)?;
    same_device("sbxlh", &init.sbxlh, sender)?;
    if sender.unit.as_deref() != Some(init.tyshxydm.as_str()) {
        return Err(WireError::new(
            ErrorCode::SenderMismatch,
            format!(
                "tyshxydm {:?} is not the unit the cabinet is enrolled for",
                init.tyshxydm
            ),
        ));
    }
    let command = CabinetCommand::Activate(Activated {
        unit_name: init.dwmc,
        contact: optional(&init.gzlxr),
        contact_phone: optional(&init.gzlxdh),
        administrators: init
            .glylb
            .into_iter()
            .map(|a| Administrator {
                account: a.glyzh,
                person: a.rybs,
            })
            .collect(),
        activated_at: received.now,
    });
    state
        .commands
        .cabinet(&sender.ei, command, metadata(request, received, None))
        .await?;
    state
        .registry
        .refresh_cabinet(&state.commands, &sender.ei)
        .await
        .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(Reply::new("", false))
}

async fn heartbeat(
    state: &AppState,
    sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let beat: messages::Heartbeat = business_data(request)?;
    same_device("sbxlh", &beat.sbxlh, sender)?;
    let status: Value = business_data(request)?;
    state
        .commands
        .log()
        .platform()
        .record_heartbeat(
            &sender.ei,
            &status.to_string(),
            received.now.timestamp_millis(),
        )
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

async fn document_operation(
    state: &AppState,
    sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let report: messages::DocumentOperation = business_data(request)?;
    same_device("Deviceid", &report.device_id, sender)?;
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
    let serial = serial_of(serial_kind, &report.ywlsh)?;
    let operated_at = business_time("optime", &report.optime)?;
    let record = open_record(state, &report.zjdata)?;
    let drawer = Drawer {
        body: required("ZZGSN", &report.cabinet_body)?.to_string(),
        row: report.row,
        column: report.column,
    };
    if let Some(cabinet) = &sender.cabinet {
        cabinet.check_drawer(&sender.ei, &drawer)?;
    }
    let location = Location {
        device: sender
            .ei
            .parse()
            .map_err(|e: custody_domain::DomainError| invalid("Deviceid", e))?,
        drawer,
    };
    let document_id = record.document_id();
    let command = match report.optype.as_str() {
        "11" | "12" => DocumentCommand::Deposit(Deposited {
            kind: if report.optype == "11" {
                DepositKind::New
            } else {
                DepositKind::Return
            },
            record,
            location,
            operator: None,
            operated_at,
        }),
        "21" | "22" => {
            let lend = report.optype == "21";
            let planned_return = match (lend, report.retdate.as_str()) {
                (true, date) => Some(business_date("retdate", date)?),
                (false, "") => None,
                (false, date) => Some(business_date("retdate", date)?),
            };
            DocumentCommand::Withdraw {
                withdrawal: Withdrawn {
                    kind: if lend {
                        WithdrawalKind::Lend
                    } else {
                        WithdrawalKind::TakeOut
                    },
                    location,
                    operator: None,
                    operated_at,
                    purpose: optional(&report.qzyt),
                    planned_return,
                    destination: optional(&report.mdd),
                    travel_approval: optional(&report.cgspywlsh),
                    anomaly: None,
                },
                // Travel approvals are not recorded by this version, so none can be valid: a
                // lend is recorded and flagged `withdrawal_without_approval` (SPEC §3.3).
                approval: ApprovalCheck::Missing,
            }
        }
        _ => DocumentCommand::WithdrawAbnormally(custody_domain::document::AbnormalWithdrawal {
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
            location,
            operator: None,
            operated_at,
        }),
    };
    let outcome = state
        .commands
        .document(
            document_id.as_str(),
            command,
            metadata(request, received, Some(serial.as_str())),
        )
        .await?;
    Ok(reply(serial.as_str(), outcome))
}

/// Opens `zjdata` with the platform key and reads the document record from it.
fn open_record(state: &AppState, zjdata: &str) -> Result<DocumentRecord, WireError> {
    let plaintext = state
        .platform_key
        .opener
        .open_base64(required("zjdata", zjdata)?)
        .map_err(|e| match e {
            EnvelopeError::NotForThisRecipient
            | EnvelopeError::KeyDecryptionFailed
            | EnvelopeError::CertificateKeyMismatch => {
                WireError::new(ErrorCode::EnvelopeRecipient, format!("zjdata: {e}"))
            }
            other => WireError::new(ErrorCode::BadEnvelope, format!("zjdata: {other}")),
        })?;
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
    _sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let report: messages::Cancellation = business_data(request)?;
    let serial = serial_of(SerialKind::Cancellation, &report.ywlsh)?;
    let document_id: DocumentId = required("zjbs", &report.zjbs)?
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
    let outcome = state
        .commands
        .document(
            document_id.as_str(),
            DocumentCommand::Cancel(Cancelled {
                reason,
                proof: optional(&report.zmwjqm),
            }),
            metadata(request, received, Some(serial.as_str())),
        )
        .await?;
    Ok(reply(serial.as_str(), outcome))
}

async fn alarm(
    state: &AppState,
    sender: &Sender,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let report: messages::Alarm = business_data(request)?;
    same_device("sbxlh", &report.sbxlh, sender)?;
    // Alarms have no serial prefix of their own in the source; any 1 to 64 letters and digits.
    let serial = required("ywlsh", &report.ywlsh)?;
    if serial.len() > 64 || !serial.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(invalid("ywlsh", "1 to 64 letters or digits"));
    }
    let command = CabinetCommand::RaiseAlarm(AlarmRaised {
        kind: required("gjlx", &report.gjlx)?.to_string(),
        content: report.gjnr,
        raised_at: business_time("gjsj", &report.gjsj)?,
    });
    let outcome = state
        .commands
        .cabinet(
            &sender.ei,
            command,
            metadata(request, received, Some(serial)),
        )
        .await?;
    Ok(reply(serial, outcome))
}
