//! `sjsb-dzsj`: a cabinet's nightly reconciliation batch (SPEC §6; docs/reconciliation.md).
//! Reads `bdata` into domain types, calls [`Application::reconcile`], and writes the two
//! deviation lists of the answer with the design's column names (`zjztdzpl`, `dzsjpl`).
//!
//! [`Application::reconcile`]: custody_application::Application::reconcile

use std::collections::HashSet;

use custody_application::reconciliation::{ReconciliationAnswer, ReconciliationBatch};
use custody_application::Intake;
use custody_domain::identifiers::{BusinessSerial, DocumentId, PersonId, SerialKind};
use custody_domain::reconciliation::{
    CabinetClaim, CabinetView, LogSide, LoggedOperation, ReportedDocument,
};
use custody_domain::transitions::Named;
use custody_domain::values::{china_standard_time, Drawer};
use custody_protocol::SignedRequest;
use serde_json::{json, Value};

use super::fields::{business_data, business_date, business_time, invalid, required, serial_of};
use super::messages::{self, NumberOrText};
use super::reply::Reply;
use crate::error::{ErrorCode, WireError};
use crate::state::AppState;

pub async fn handle(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let batch = read_batch(request)?;
    let answer = state.application.reconcile(intake, batch).await?;
    Ok(reply(&answer))
}

/// sjsb-dzsj's bdata as the use case's batch.
pub(super) fn read_batch(request: &SignedRequest) -> Result<ReconciliationBatch, WireError> {
    let batch: messages::ReconciliationBatch = business_data(request)?;
    Ok(ReconciliationBatch {
        serial: serial_of("dzywlsh", SerialKind::Reconciliation, &batch.dzywlsh)?,
        business_date: business_date("dzrq", &batch.dzrq)?,
        documents: reported_documents(&batch.zjzt)?,
        operations: logged_operations(&batch.czls)?,
        device: batch.sbxlh,
        unit: batch.tyshxydm,
    })
}

/// A code given as a number or a string of digits.
fn code(value: &NumberOrText) -> Result<Option<u64>, ()> {
    match value {
        NumberOrText::Absent => Ok(None),
        NumberOrText::Number(n) => Ok(Some(*n)),
        NumberOrText::Text(t) if t.is_empty() => Ok(None),
        NumberOrText::Text(t) if t.bytes().all(|b| b.is_ascii_digit()) => {
            t.parse().map(Some).map_err(|_| ())
        }
        NumberOrText::Text(_) => Err(()),
    }
}

/// A drawer row or column: a number from 1.
fn drawer_index(field: &str, value: &NumberOrText) -> Result<u16, WireError> {
    match code(value) {
        Ok(Some(n)) => u16::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| invalid(field, format!("{n} is not a drawer index from 1"))),
        Ok(None) => Err(WireError::new(
            ErrorCode::MissingField,
            format!("{field} is empty"),
        )),
        Err(()) => Err(invalid(field, "not a number")),
    }
}

/// The batch's document states (`zjzt`), a document listed once. (Whether a drawer is one of
/// the cabinet's is the use case's check.)
fn reported_documents(
    items: &[messages::DocumentStateItem],
) -> Result<Vec<ReportedDocument>, WireError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("zjzt[{i}].{field}");
        let document: DocumentId = required(&at("zjbs"), &item.zjbs)?
            .parse()
            .map_err(|e| invalid(&at("zjbs"), e))?;
        if !seen.insert(document.clone()) {
            return Err(invalid(&at("zjbs"), format!("{document} is listed twice")));
        }
        let holder: PersonId = required(&at("rybs"), &item.rybs)?
            .parse()
            .map_err(|e| invalid(&at("rybs"), e))?;
        let claim = match code(&item.zt) {
            Ok(Some(1)) => CabinetClaim::InCabinet(Drawer {
                body: required(&at("zjgxlh"), &item.zjgxlh)?.to_string(),
                row: drawer_index(&at("cth"), &item.cth)?,
                column: drawer_index(&at("ctl"), &item.ctl)?,
            }),
            Ok(Some(2)) => CabinetClaim::Out,
            Ok(None) => {
                return Err(WireError::new(
                    ErrorCode::MissingField,
                    format!("{} is empty", at("zt")),
                ))
            }
            _ => return Err(invalid(&at("zt"), "1 (in the cabinet) or 2 (out)")),
        };
        out.push(ReportedDocument {
            document,
            holder,
            claim,
        });
    }
    Ok(out)
}

/// The batch's operation log (`czls`).
fn logged_operations(
    items: &[messages::OperationLogItem],
) -> Result<Vec<LoggedOperation>, WireError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |field: &str| format!("czls[{i}].{field}");
            let serial: BusinessSerial = required(&at("ywlsh"), &item.ywlsh)?
                .parse()
                .map_err(|e| invalid(&at("ywlsh"), e))?;
            let operation = required(&at("czlx"), &item.czlx)?;
            if operation.len() > 32
                || !operation
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                return Err(invalid(&at("czlx"), "1 to 32 letters, digits or '_'"));
            }
            Ok(LoggedOperation {
                serial: serial.to_string(),
                operation: operation.to_string(),
                operated_at: business_time(&at("czsj"), &item.czsj)?,
            })
        })
        .collect()
}

/// The answer to the cabinet: the two deviation lists (the design's 对账响应清单), with the
/// source's column names.
fn reply(answer: &ReconciliationAnswer) -> Reply {
    let mut reply = Reply::new(answer.serial.as_str(), answer.duplicate);
    let reconciliation = &answer.reconciliation;
    let Some(diff) = &reconciliation.diff else {
        return reply;
    };
    let snake = |value: Value| value.as_str().map(str::to_string).unwrap_or_default();
    let states: Vec<Value> = diff
        .state_deviations
        .iter()
        .map(|d| {
            json!({
                "zjbs": d.document,
                "rybs": d.holder,
                "ryxm": d.holder_name,
                "tyshxydm": d.unit,
                "bggzt": match d.cabinet_state {
                    CabinetView::InCabinet => "1",
                    CabinetView::Out => "2",
                    CabinetView::NotReported => "",
                },
                "xtzt": d.platform_state.name(),
                "pllx": snake(json!(d.reason)),
                "sfxfcg": reconciliation.repaired(&d.document),
            })
        })
        .collect();
    let logs: Vec<Value> = diff
        .log_deviations
        .iter()
        .map(|d| {
            json!({
                "ywlsh": d.serial,
                "zjbs": d.document,
                "czlx": d.operation,
                "czsj": d.operated_at
                    .map(|t| t.with_timezone(&china_standard_time()).format("%Y%m%d%H%M%S").to_string())
                    .unwrap_or_default(),
                "ly": match d.side {
                    LogSide::CabinetOnly => "cabinet",
                    LogSide::PlatformOnly => "platform",
                },
            })
        })
        .collect();
    reply.extra.insert("zjztdzpl".into(), Value::Array(states));
    reply.extra.insert("dzsjpl".into(), Value::Array(logs));
    reply
}
