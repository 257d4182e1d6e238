//! The exit-entry adapter's messages at the wire (`sjts-*`): border crossings, newly issued
//! documents and the answers to filing lists. Each is a list; every item becomes one use case
//! call, judged and made idempotent on its own (SPEC §5.1).
//!
//! The second half of this file is the field and list plumbing that the unit clients' messages
//! (`unit.rs`) share.

use base64::Engine;
use custody_application::exit_entry::FilingAnswer;
use custody_application::unit::FilingKind;
use custody_application::Intake;
use custody_commands::Outcome;
use custody_domain::document::{BorderCrossed, CrossingDirection, IssuanceConfirmed};
use custody_domain::identifiers::{
    BusinessSerial, DocumentId, DocumentNumber, DocumentType, PersonId, SerialKind,
};
use custody_eventlog::Rejection;
use custody_protocol::SignedRequest;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::fields::{
    business_data, business_date, business_time, invalid, optional, required, serial_of,
};
use super::ingress::{Received, Reply};
use super::messages::{self, MessageType};
use crate::error::{ErrorCode, WireError};
use crate::server::AppState;

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
    let list: messages::RecordList = business_data(request)?;
    check_list_length("records", list.records.len())?;
    let mut results = Vec::with_capacity(list.records.len());
    // In order, one by one: two crossings of one document in a list must apply in order.
    for item in &list.records {
        let outcome = border_crossing(state, intake, item).await;
        results.push(ItemResult::new(item_key(item, "jlbh"), outcome));
    }
    Ok(list_reply(state, request, received, None, results).await)
}

async fn border_crossing(
    state: &AppState,
    intake: &Intake,
    item: &Value,
) -> Result<Outcome, WireError> {
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
        port: required("kadm", &record.kadm)?.to_string(),
        country: country_code("gjdq", &record.gjdq)?,
        anomaly: None,
    };
    Ok(state
        .application
        .record_crossing(intake, &document, crossing)
        .await?)
}

async fn issued_documents(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let list: messages::RecordList = business_data(request)?;
    check_list_length("records", list.records.len())?;
    let mut results = Vec::with_capacity(list.records.len());
    for item in &list.records {
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
    let record: messages::IssuedDocument = list_item(item)?;
    let issuance = IssuanceConfirmed {
        record_id: record_id("jlbh", &record.jlbh)?.to_string(),
        holder: person_id(&record.rybs)?,
        document_type: document_type(&record.zjlx)?,
        number: document_number(&record.zjhm)?,
        issued_on: business_date("qfrq", &record.qfrq)?,
        valid_until: business_date("yxqz", &record.yxqz)?,
    };
    Ok(state.application.confirm_issuance(intake, issuance).await?)
}

async fn filing_results(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let answers: messages::FilingResults = business_data(request)?;
    let serial = serial_of("bbywlsh", SerialKind::Filing, &answers.bbywlsh)?;
    check_list_length("bbjg", answers.bbjg.len())?;
    let mut results = Vec::with_capacity(answers.bbjg.len());
    for item in &answers.bbjg {
        let outcome = filing_result(state, intake, &serial, item).await;
        results.push(ItemResult::new(item_key(item, "rybs"), outcome));
    }
    Ok(list_reply(state, request, received, Some(serial.as_str()), results).await)
}

/// `bblx`: what a filing list asked for a person.
pub(super) fn filing_kind(value: &str) -> Result<FilingKind, WireError> {
    match required("bblx", value)? {
        "new" => Ok(FilingKind::New),
        "change" => Ok(FilingKind::Change),
        "revoke" => Ok(FilingKind::Revoke),
        other => Err(invalid(
            "bblx",
            format!("{other:?} is not new, change or revoke"),
        )),
    }
}

async fn filing_result(
    state: &AppState,
    intake: &Intake,
    serial: &BusinessSerial,
    item: &Value,
) -> Result<Outcome, WireError> {
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
    let answer = FilingAnswer {
        person,
        kind,
        accepted,
        remark: optional(&answer.bz),
    };
    Ok(state
        .application
        .answer_filing(intake, serial, answer)
        .await?)
}

/// A feed's own record id: the source gives it no format, so 1 to 64 letters, digits, `-` or
/// `_` (enough to key it, nothing that could be mistaken for a key separator).
pub(super) fn record_id<'a>(field: &str, value: &'a str) -> Result<&'a str, WireError> {
    let value = required(field, value)?;
    let ok = value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(value)
    } else {
        Err(invalid(field, "1 to 64 letters, digits, '-' or '_'"))
    }
}

pub(super) fn person_id(value: &str) -> Result<PersonId, WireError> {
    required("rybs", value)?
        .parse()
        .map_err(|e| invalid("rybs", e))
}

pub(super) fn document_type(value: &str) -> Result<DocumentType, WireError> {
    required("zjlx", value)?
        .parse()
        .map_err(|e| invalid("zjlx", e))
}

fn document_number(value: &str) -> Result<DocumentNumber, WireError> {
    required("zjhm", value)?
        .parse()
        .map_err(|e| invalid("zjhm", e))
}

fn document_id(zjlx: &str, zjhm: &str) -> Result<DocumentId, WireError> {
    Ok(DocumentId::of(
        document_type(zjlx)?,
        &document_number(zjhm)?,
    ))
}

/// ISO 3166-1 alpha-3: three capital letters.
fn country_code(field: &str, value: &str) -> Result<String, WireError> {
    let value = required(field, value)?;
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value.to_string())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is not an ISO 3166-1 alpha-3 code"),
        ))
    }
}

/// A scanned form (base64 PDF) with its signature, as the platform keeps it: digest, size and
/// signature.
pub(super) fn signed_form(
    field: &str,
    form: &str,
    signature_field: &str,
    signature: &str,
) -> Result<custody_domain::travel_approval::SignedForm, WireError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(required(field, form)?)
        .map_err(|_| WireError::new(ErrorCode::Malformed, format!("{field} is not base64")))?;
    let signature = required(signature_field, signature)?;
    base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| {
            WireError::new(
                ErrorCode::Malformed,
                format!("{signature_field} is not base64"),
            )
        })?;
    Ok(custody_domain::travel_approval::SignedForm {
        sm3: custody_domain::identifiers::sm3_hex(&bytes),
        size: bytes.len() as u64,
        signature: signature.to_string(),
    })
}

// --- shared with unit.rs: lists ----------------------------------------------------------

/// At most this many items in one list message (SPEC §5.1 for `sjts-crjjl`; the same bound
/// for every list, so no request holds the ingress for long).
pub(super) const MAX_ITEMS: usize = 1000;

pub(super) fn check_list_length(field: &str, length: usize) -> Result<(), WireError> {
    if length > MAX_ITEMS {
        Err(invalid(
            field,
            format!("{length} items; at most {MAX_ITEMS} in one message"),
        ))
    } else {
        Ok(())
    }
}

/// One list item as its struct; a missing key or a value of the wrong type is `E_MALFORMED`
/// for this item only.
pub(super) fn list_item<T: DeserializeOwned>(item: &Value) -> Result<T, WireError> {
    T::deserialize(item).map_err(|e| WireError::new(ErrorCode::Malformed, format!("item: {e}")))
}

/// The key an item is answered under (`jlbh` or `rybs`); `""` when it has none.
pub(super) fn item_key(item: &Value, field: &str) -> String {
    item[field].as_str().unwrap_or_default().to_string()
}

/// What became of one item.
pub(super) struct ItemResult {
    pub key: String,
    pub outcome: Result<Outcome, WireError>,
}

impl ItemResult {
    pub fn new(key: String, outcome: Result<Outcome, WireError>) -> ItemResult {
        ItemResult { key, outcome }
    }

    fn to_json(&self) -> Value {
        match &self.outcome {
            Ok(outcome) => json!({
                "key": self.key,
                "status": true,
                "error_code": "0",
                "error_msg": "",
                "duplicate": matches!(outcome, Outcome::Duplicate(_)),
            }),
            Err(error) => json!({
                "key": self.key,
                "status": false,
                "error_code": error.code.as_str(),
                "error_msg": error.message,
                "duplicate": false,
            }),
        }
    }
}

/// The answer to a list message: 200 with one result per item. Every refused item is also kept
/// in the rejected-reports log, with the whole envelope and the item's key in the message.
pub(super) async fn list_reply(
    state: &AppState,
    request: &SignedRequest,
    received: &Received<'_>,
    serial: Option<&str>,
    results: Vec<ItemResult>,
) -> Reply {
    for result in &results {
        if let Err(error) = &result.outcome {
            keep_item_rejection(state, request, received, serial, &result.key, error).await;
        }
    }
    let all_duplicates = !results.is_empty()
        && results
            .iter()
            .all(|r| matches!(r.outcome, Ok(Outcome::Duplicate(_))));
    let mut reply = Reply::new(serial.unwrap_or_default(), all_duplicates);
    reply.extra.insert(
        "results".into(),
        Value::Array(results.iter().map(ItemResult::to_json).collect()),
    );
    reply
}

async fn keep_item_rejection(
    state: &AppState,
    request: &SignedRequest,
    received: &Received<'_>,
    serial: Option<&str>,
    key: &str,
    error: &WireError,
) {
    let rejection = Rejection {
        id: 0,
        received_ms: received.now.timestamp_millis(),
        mstype: received.mstype.to_string(),
        ei: request.c.ei.clone(),
        reqid: request.c.reqid.clone(),
        ywlsh: serial.unwrap_or(key).to_string(),
        http_status: i64::from(error.status().as_u16()),
        error_code: error.code.as_str().to_string(),
        error_message: format!("item {key:?}: {}", error.message),
        authenticated: true,
        body: String::from_utf8_lossy(received.body).into_owned(),
        body_sm3: received.body_sm3.clone(),
        touched_unit: error.touched_unit.clone(),
    };
    if let Err(error) = state
        .commands
        .log()
        .platform()
        .insert_rejection(&rejection)
        .await
    {
        // The item's refusal still reaches the sender in its result.
        tracing::error!(%error, code = rejection.error_code, "could not keep a refused item");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_holds_at_most_a_thousand_items() {
        assert!(check_list_length("records", 0).is_ok());
        assert!(check_list_length("records", MAX_ITEMS).is_ok());
        let refused = check_list_length("records", MAX_ITEMS + 1).expect_err("1,001");
        assert_eq!(refused.code, ErrorCode::InvalidField);
    }

    #[test]
    fn record_ids_and_countries_are_checked() {
        assert!(record_id("jlbh", "CRJ-2026_000001").is_ok());
        assert_eq!(
            record_id("jlbh", "").map_err(|e| e.code),
            Err(ErrorCode::MissingField)
        );
        for bad in ["a:b", "a b", &"x".repeat(65)] {
            assert_eq!(
                record_id("jlbh", bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidField),
                "{bad}"
            );
        }
        assert_eq!(country_code("gjdq", "HKG").as_deref(), Ok("HKG"));
        for bad in ["HK", "hkg", "HKGX", "H1G"] {
            assert!(country_code("gjdq", bad).is_err(), "{bad}");
        }
    }
}
