//! The unit clients' messages at the wire: filing lists (`sjsb-bbxx`) and pulling their
//! answers (`sjfk-bbjg`), travel approvals (`sjsb-cgsp`) and consent letters (`sjsb-tyh`).
//! Fields become domain types here; the rules (a unit acts only on persons it filed) are the
//! application layer's.

use custody_application::unit::{FilingEntry, FilingKind, FilingStatus};
use custody_application::{Intake, Principal};
use custody_commands::Outcome;
use custody_domain::consent_letter::{ConsentPurpose, LetterRecorded};
use custody_domain::identifiers::{BusinessSerial, CitizenId, PersonId, SerialKind};
use custody_domain::person::PersonDetails;
use custody_domain::travel_approval::ApprovalRecorded;
use custody_protocol::{EnvelopeOpener, SignedRequest};
use serde_json::{json, Value};

use super::fields::{
    business_data, business_date, country_code, document_type, filing_kind, invalid, open_envelope,
    optional_text, person_id, required, serial_of, signed_form, text,
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
        MessageType::FilingList => filing_list(state, intake, request, received).await,
        MessageType::FilingResultsPull => filing_results_pull(state, intake, request).await,
        MessageType::TravelApproval => travel_approval(state, intake, request).await,
        MessageType::ConsentLetter => consent_letter(state, intake, request).await,
        other => Err(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{other:?} is not a unit message"),
        )),
    }
}

// --- sjsb-bbxx --------------------------------------------------------------------------

async fn filing_list(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let (serial, items) = read_filing_list(request, |unit| {
        Ok(state.application.check_list_unit(&intake.principal, unit)?)
    })?;
    let mut results = Vec::with_capacity(items.len());
    for item in &items {
        let outcome = filing_item(state, intake, &serial, item).await;
        results.push(ItemResult::new(item_key(item, "rybs"), outcome));
    }
    Ok(list_reply(state, request, received, Some(serial.as_str()), results).await)
}

/// sjsb-bbxx's bdata: the list's serial and its items (each read on its own); `check_unit`
/// judges `tyshxydm` where the handler always judged it, before the serial.
pub(super) fn read_filing_list(
    request: &SignedRequest,
    check_unit: impl FnOnce(&str) -> Result<(), WireError>,
) -> Result<(BusinessSerial, Vec<Value>), WireError> {
    let list: messages::FilingList = business_data(request)?;
    check_unit(required("tyshxydm", &list.tyshxydm)?)?;
    let serial = serial_of("bbywlsh", SerialKind::Filing, &list.bbywlsh)?;
    // The unit's signed approval sheet of the list must come with it; the persons' events keep
    // the envelope's SM3, which covers it.
    signed_form("spdwj", &list.spdwj, "spdwjqm", &list.spdwjqm)?;
    check_list_length("bbrylb", list.bbrylb.len())?;
    Ok((serial, list.bbrylb))
}

async fn filing_item(
    state: &AppState,
    intake: &Intake,
    serial: &BusinessSerial,
    item: &Value,
) -> Result<Outcome, WireError> {
    let entry = read_filing_entry(&state.platform_key.opener, item)?;
    Ok(state.application.file_person(intake, serial, entry).await?)
}

/// One sjsb-bbxx person, `rydata` opened with `opener`.
pub(super) fn read_filing_entry(
    opener: &EnvelopeOpener,
    item: &Value,
) -> Result<FilingEntry, WireError> {
    let entry: messages::FilingItem = list_item(item)?;
    let kind = filing_kind(&entry.bblx)?;
    let person = person_id(&entry.rybs)?;
    // A revocation needs no personal data; when it carries some, it must still be this person's.
    let details = match (kind, entry.rydata.is_empty()) {
        (FilingKind::Revoke, true) => None,
        (FilingKind::Revoke, false) => Some(person_details(opener, &person, &entry)?),
        (_, true) => return Err(WireError::new(ErrorCode::MissingField, "rydata is empty")),
        (_, false) => Some(person_details(opener, &person, &entry)?),
    };
    Ok(FilingEntry {
        person,
        kind,
        details,
    })
}

/// Opens `rydata` with the platform key and checks that it is the person `rybs` names.
fn person_details(
    opener: &EnvelopeOpener,
    person: &PersonId,
    entry: &messages::FilingItem,
) -> Result<PersonDetails, WireError> {
    let plaintext = open_envelope(opener, "rydata", &entry.rydata)?;
    let data: messages::PersonData = serde_json::from_slice(&plaintext).map_err(|e| {
        WireError::new(
            ErrorCode::BadRecord,
            format!("rydata is not UTF-8 JSON {{xm, gmsfhm, lxdh}}: {e}"),
        )
    })?;
    let name = text("xm", data.xm.trim(), 64)?;
    let citizen_id: CitizenId = required("gmsfhm", &data.gmsfhm)?
        .parse()
        .map_err(|e| invalid("gmsfhm", e))?;
    if &PersonId::of(&citizen_id, &name) != person {
        return Err(invalid(
            "rybs",
            "is not SM3(gmsfhm + xm) of the person in rydata",
        ));
    }
    Ok(PersonDetails {
        name,
        citizen_id,
        phone: optional_text("lxdh", &data.lxdh, 32)?,
        position: optional_text("zw", &entry.zw, 100)?,
        registered_documents: optional_text("zjhzc", &entry.zjhzc, 500)?,
    })
}

// --- sjfk-bbjg --------------------------------------------------------------------------

async fn filing_results_pull(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let serial = read_filing_results_pull(request)?;
    let results = state
        .application
        .filing_results(&intake.principal, &serial, |ei| {
            state.registry.get(ei).and_then(|sender| sender.unit)
        })
        .await?;
    let persons: Vec<Value> = results
        .iter()
        .map(|result| {
            json!({
                "rybs": result.person,
                "bbzt": match result.status {
                    FilingStatus::Pending => "pending",
                    FilingStatus::Accepted => "accepted",
                    FilingStatus::Refused => "refused",
                },
                "bblx": result.kind.map(FilingKind::code).unwrap_or_default(),
            })
        })
        .collect();
    let mut reply = Reply::new(serial.as_str(), false);
    reply.extra.insert("bbjg".into(), Value::Array(persons));
    Ok(reply)
}

/// sjfk-bbjg's bdata: the filing list asked about.
pub(super) fn read_filing_results_pull(
    request: &SignedRequest,
) -> Result<BusinessSerial, WireError> {
    let pull: messages::FilingResultsPull = business_data(request)?;
    serial_of("bbywlsh", SerialKind::Filing, &pull.bbywlsh)
}

// --- sjsb-cgsp --------------------------------------------------------------------------

async fn travel_approval(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let (serial, approval) = read_travel_approval(&intake.principal, request)?;
    let outcome = state
        .application
        .record_travel_approval(intake, &serial, approval)
        .await?;
    Ok(Reply::new(
        serial.as_str(),
        matches!(outcome, Outcome::Duplicate(_)),
    ))
}

/// sjsb-cgsp's bdata: the approval's serial and the approval, for `principal`'s unit.
pub(super) fn read_travel_approval(
    principal: &Principal,
    request: &SignedRequest,
) -> Result<(BusinessSerial, ApprovalRecorded), WireError> {
    let report: messages::TravelApproval = business_data(request)?;
    let serial = serial_of("cgspywlsh", SerialKind::TravelApproval, &report.cgspywlsh)?;
    let approval = ApprovalRecorded {
        holder: person_id(&report.rybs)?,
        unit: principal.own_unit()?.clone(),
        destination: country_code("mdd", &report.mdd)?,
        departure: business_date("cfsj", &report.cfsj)?,
        return_date: business_date("fhsj", &report.fhsj)?,
        reason: optional_text("cgsy", &report.cgsy, 500)?,
        document_type: document_type(&report.zjlx)?,
        approved_on: business_date("tysj", &report.tysj)?,
        form: signed_form("spbwj", &report.spbwj, "spbwjqm", &report.spbwjqm)?,
    };
    Ok((serial, approval))
}

// --- sjsb-tyh ---------------------------------------------------------------------------

async fn consent_letter(
    state: &AppState,
    intake: &Intake,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let (serial, letter) = read_consent_letter(&intake.principal, request)?;
    let outcome = state
        .application
        .record_consent_letter(intake, &serial, letter)
        .await?;
    Ok(Reply::new(
        serial.as_str(),
        matches!(outcome, Outcome::Duplicate(_)),
    ))
}

/// sjsb-tyh's bdata: the letter's serial and the letter, for `principal`'s unit.
pub(super) fn read_consent_letter(
    principal: &Principal,
    request: &SignedRequest,
) -> Result<(BusinessSerial, LetterRecorded), WireError> {
    let report: messages::ConsentLetter = business_data(request)?;
    let serial = serial_of("tyhywlsh", SerialKind::ConsentLetter, &report.tyhywlsh)?;
    let travel_approval = match report.cgspywlsh.as_str() {
        "" => None,
        named => Some(serial_of("cgspywlsh", SerialKind::TravelApproval, named)?),
    };
    let purpose = match required("crjywlx", &report.crjywlx)? {
        "new" => ConsentPurpose::NewDocument,
        "renew" => ConsentPurpose::Renewal,
        "endorse" => ConsentPurpose::Endorsement,
        other => {
            return Err(invalid(
                "crjywlx",
                format!("{other:?} is not new, renew or endorse"),
            ))
        }
    };
    let letter = LetterRecorded {
        holder: person_id(&report.rybs)?,
        unit: principal.own_unit()?.clone(),
        travel_approval: travel_approval.as_ref().map(ToString::to_string),
        purpose,
        document_type: document_type(&report.zjlx)?,
        issued_on: business_date("kjrq", &report.kjrq)?,
        form: signed_form("tyhwj", &report.tyhwj, "tyhwjqm", &report.tyhwjqm)?,
    };
    Ok((serial, letter))
}
