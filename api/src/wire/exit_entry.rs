//! The exit-entry adapter's messages at the wire (`sjts-*`): border crossings, newly issued
//! documents and the answers to filing lists. Each is a list; every item becomes one use case
//! call, judged and made idempotent on its own (SPEC §5.1).

use custody_application::exit_entry::FilingAnswer;
use custody_application::Intake;
use custody_commands::Outcome;
use custody_domain::document::{BorderCrossed, CrossingDirection, IssuanceConfirmed};
use custody_domain::identifiers::{BusinessSerial, DocumentId, SerialKind};
use custody_protocol::SignedRequest;
use serde_json::Value;

use super::fields::{
    business_data, business_date, business_time, country_code, document_id, document_number,
    document_type, filing_kind, invalid, optional_text, person_id, record_id, required, serial_of,
    text,
};
use super::lists::{check_list_length, item_key, list_item, list_reply, ItemResult};
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
        MessageType::BorderCrossings => border_crossings(state, intake, request, received).await,
        MessageType::IssuedDocuments => issued_documents(state, intake, request, received).await,
        MessageType::FilingResults => filing_results(state, intake, request, received).await,
        other => Err(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{other:?} is not an exit-entry message"),
        )),
    }
}

async fn border_crossings(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let records = read_records(request)?;
    let mut results = Vec::with_capacity(records.len());
    // In order, one by one: two crossings of one document in a list must apply in order.
    for item in &records {
        let outcome = border_crossing(state, intake, item).await;
        results.push(ItemResult::new(item_key(item, "jlbh"), outcome));
    }
    Ok(list_reply(state, request, received, None, results).await)
}

/// sjts-crjjl's and sjts-bzjg's bdata: `{records: [...]}`, bounded, items read on their own.
pub(super) fn read_records(request: &SignedRequest) -> Result<Vec<Value>, WireError> {
    let list: messages::RecordList = business_data(request)?;
    check_list_length("records", list.records.len())?;
    Ok(list.records)
}

async fn border_crossing(
    state: &AppState,
    intake: &Intake,
    item: &Value,
) -> Result<Outcome, WireError> {
    let (document, crossing) = read_border_crossing(item)?;
    Ok(state
        .application
        .record_crossing(intake, &document, crossing)
        .await?)
}

/// One sjts-crjjl record: the document and its crossing.
pub(super) fn read_border_crossing(item: &Value) -> Result<(DocumentId, BorderCrossed), WireError> {
    let record: messages::BorderCrossing = list_item(item)?;
    let jlbh = record_id("jlbh", &record.jlbh)?;
    let document = document_id(&record.zjlx, &record.zjhm)?;
    let direction = match required("crjlx", &record.crjlx)? {
        "1" => CrossingDirection::Exit,
        "2" => CrossingDirection::Entry,
        other => {
            return Err(invalid(
                "crjlx",
                format!("{other:?} is not 1 (exit) or 2 (entry)"),
            ))
        }
    };
    // The aggregate decides the state and the anomalies (exit while in a cabinet, a document
    // it has never seen); every crossing is kept.
    let crossing = BorderCrossed {
        record_id: jlbh.to_string(),
        direction,
        crossed_at: business_time("crjsj", &record.crjsj)?,
        port: text("kadm", &record.kadm, 32)?,
        country: country_code("gjdq", &record.gjdq)?,
        anomaly: None,
    };
    Ok((document, crossing))
}

async fn issued_documents(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let records = read_records(request)?;
    let mut results = Vec::with_capacity(records.len());
    for item in &records {
        let outcome = issued_document(state, intake, item).await;
        results.push(ItemResult::new(item_key(item, "jlbh"), outcome));
    }
    Ok(list_reply(state, request, received, None, results).await)
}

async fn issued_document(
    state: &AppState,
    intake: &Intake,
    item: &Value,
) -> Result<Outcome, WireError> {
    let issuance = read_issuance(item)?;
    Ok(state.application.confirm_issuance(intake, issuance).await?)
}

/// One sjts-bzjg record.
pub(super) fn read_issuance(item: &Value) -> Result<IssuanceConfirmed, WireError> {
    let record: messages::IssuedDocument = list_item(item)?;
    Ok(IssuanceConfirmed {
        record_id: record_id("jlbh", &record.jlbh)?.to_string(),
        holder: person_id(&record.rybs)?,
        document_type: document_type(&record.zjlx)?,
        number: document_number(&record.zjhm)?.into(),
        issued_on: business_date("qfrq", &record.qfrq)?,
        valid_until: business_date("yxqz", &record.yxqz)?,
    })
}

async fn filing_results(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let (serial, items) = read_filing_results(request)?;
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        let outcome = filing_result(state, intake, &serial, item).await;
        results.push(ItemResult::new(item_key(item, "rybs"), outcome));
    }
    Ok(list_reply(state, request, received, Some(serial.as_str()), results).await)
}

/// sjts-bbjg's bdata: the filing list answered, and its items (each read on its own).
pub(super) fn read_filing_results(
    request: &SignedRequest,
) -> Result<(BusinessSerial, Vec<Value>), WireError> {
    let answers: messages::FilingResults = business_data(request)?;
    let serial = serial_of("bbywlsh", SerialKind::Filing, &answers.bbywlsh)?;
    check_list_length("bbjg", answers.bbjg.len())?;
    Ok((serial, answers.bbjg))
}

async fn filing_result(
    state: &AppState,
    intake: &Intake,
    serial: &BusinessSerial,
    item: &Value,
) -> Result<Outcome, WireError> {
    let answer = read_filing_answer(item)?;
    Ok(state
        .application
        .answer_filing(intake, serial, answer)
        .await?)
}

/// One sjts-bbjg answer.
pub(super) fn read_filing_answer(item: &Value) -> Result<FilingAnswer, WireError> {
    let answer: messages::FilingResult = list_item(item)?;
    let person = person_id(&answer.rybs)?;
    let kind = filing_kind(&answer.bblx)?;
    let accepted = match required("bbzt", &answer.bbzt)? {
        "accepted" => true,
        "refused" => false,
        other => {
            return Err(invalid(
                "bbzt",
                format!("{other:?} is not accepted or refused"),
            ))
        }
    };
    Ok(FilingAnswer {
        person,
        kind,
        accepted,
        remark: optional_text("bz", &answer.bz, 500)?,
    })
}
