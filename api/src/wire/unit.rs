//! What the unit clients' messages do: filing lists (`sjsb-bbxx`) and pulling their answers
//! (`sjfk-bbjg`), travel approvals (`sjsb-cgsp`) and consent letters (`sjsb-tyh`). A unit client
//! is registered for one unit and speaks only for it.

use chrono::NaiveDate;
use custody_commands::Outcome;
use custody_domain::consent_letter::{
    ConsentLetter, ConsentLetterCommand, ConsentPurpose, LetterRecorded,
};
use custody_domain::document::ApprovalCheck;
use custody_domain::identifiers::{BusinessSerial, CitizenId, CreditCode, PersonId, SerialKind};
use custody_domain::person::{
    ChangeSubmitted, FilingSubmitted, Person, PersonCommand, PersonDetails, RevocationSubmitted,
};
use custody_domain::travel_approval::{
    ApprovalRecorded, TravelApproval, TravelApprovalCommand, TravelApprovalState,
};
use custody_protocol::SignedRequest;
use serde_json::{json, Value};

use super::exit_entry::{
    check_list_length, document_type, item_key, keys, list_item, list_reply, person_id,
    signed_form, FilingKind, ItemResult,
};
use super::fields::{
    business_data, business_date, invalid, metadata, open_envelope, optional, required, serial_of,
};
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
    let unit = sender_unit(sender)?;
    match message {
        MessageType::FilingList => filing_list(state, &unit, request, received).await,
        MessageType::FilingResultsPull => filing_results_pull(state, &unit, request).await,
        MessageType::TravelApproval => travel_approval(state, &unit, request, received).await,
        MessageType::ConsentLetter => consent_letter(state, &unit, request, received).await,
        other => Err(WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("{other:?} is not a unit message"),
        )),
    }
}

/// The unit a unit client was registered for.
fn sender_unit(sender: &Sender) -> Result<CreditCode, WireError> {
    // Registration refuses a unit sender without a valid code, so this only fails if the
    // stored registration was damaged.
    sender
        .unit
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| {
            WireError::new(
                ErrorCode::Internal,
                format!("unit sender {}: registered unit: {e}", sender.ei),
            )
        })
}

fn sender_mismatch(message: String) -> WireError {
    WireError::new(ErrorCode::SenderMismatch, message)
}

/// A person known to the platform must be the sending unit's: one unit may not file, approve or
/// consent for another's staff. A person the platform has not seen yet is the unit's to file.
async fn check_own_person(
    state: &AppState,
    unit: &CreditCode,
    person: &PersonId,
) -> Result<Person, WireError> {
    let known: Person = state.commands.load(person.as_str()).await?;
    match &known.unit {
        Some(owner) if owner != unit => Err(sender_mismatch(format!(
            "person {person} is filed by unit {owner}, not {unit}"
        ))),
        _ => Ok(known),
    }
}

// --- sjsb-bbxx --------------------------------------------------------------------------

async fn filing_list(
    state: &AppState,
    unit: &CreditCode,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let list: messages::FilingList = business_data(request)?;
    if required("tyshxydm", &list.tyshxydm)? != unit.as_str() {
        return Err(sender_mismatch(format!(
            "tyshxydm {:?} is not the signing client's unit {unit}",
            list.tyshxydm
        )));
    }
    let serial = serial_of("bbywlsh", SerialKind::Filing, &list.bbywlsh)?;
    // The unit's signed approval sheet of the list must come with it; the persons' events keep
    // the envelope's SM3, which covers it.
    signed_form("spdwj", &list.spdwj, "spdwjqm", &list.spdwjqm)?;
    check_list_length("bbrylb", list.bbrylb.len())?;
    let mut results = Vec::with_capacity(list.bbrylb.len());
    for item in &list.bbrylb {
        let outcome = filing_item(state, unit, request, received, &serial, item).await;
        results.push(ItemResult::new(item_key(item, "rybs"), outcome));
    }
    Ok(list_reply(state, request, received, Some(serial.as_str()), results).await)
}

async fn filing_item(
    state: &AppState,
    unit: &CreditCode,
    request: &SignedRequest,
    received: &Received<'_>,
    serial: &BusinessSerial,
    item: &Value,
) -> Result<Outcome, WireError> {
    let entry: messages::FilingItem = list_item(item)?;
    let kind = FilingKind::parse(&entry.bblx)?;
    let person = person_id(&entry.rybs)?;
    // A revocation needs no personal data; when it carries some, it must still be this person's.
    let details = match (kind, entry.rydata.is_empty()) {
        (FilingKind::Revoke, true) => None,
        _ => Some(person_details(state, &person, &entry)?),
    };
    if kind != FilingKind::New {
        check_own_person(state, unit, &person).await?;
    }
    let filing_serial = serial.to_string();
    let command = match (kind, details) {
        (FilingKind::New, Some(details)) => PersonCommand::SubmitFiling(FilingSubmitted {
            filing_serial,
            unit: unit.clone(),
            details,
        }),
        (FilingKind::Change, Some(details)) => PersonCommand::SubmitChange(ChangeSubmitted {
            filing_serial,
            details,
        }),
        (FilingKind::Revoke, _) => {
            PersonCommand::SubmitRevocation(RevocationSubmitted { filing_serial })
        }
        // person_details ran for every kind but a revocation without data.
        (_, None) => return Err(WireError::new(ErrorCode::MissingField, "rydata is empty")),
    };
    let key = format!("{}{}", keys::filing_prefix(serial.as_str()), person);
    Ok(state
        .commands
        .person(
            person.as_str(),
            command,
            metadata(request, received, Some(serial.as_str()), Some(key)),
        )
        .await?)
}

/// Opens `rydata` with the platform key and checks that it is the person `rybs` names.
fn person_details(
    state: &AppState,
    person: &PersonId,
    entry: &messages::FilingItem,
) -> Result<PersonDetails, WireError> {
    let plaintext = open_envelope(state, "rydata", &entry.rydata)?;
    let data: messages::PersonData = serde_json::from_slice(&plaintext).map_err(|e| {
        WireError::new(
            ErrorCode::BadRecord,
            format!("rydata is not UTF-8 JSON {{xm, gmsfhm, lxdh}}: {e}"),
        )
    })?;
    let name = required("xm", data.xm.trim())?.to_string();
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
        phone: optional(&data.lxdh),
        position: optional(&entry.zw),
        registered_documents: optional(&entry.zjhzc),
    })
}

// --- sjfk-bbjg --------------------------------------------------------------------------

/// Where one person of a filing list stands, as `sjfk-bbjg` answers it.
fn answer_status(answer_event_type: Option<&str>) -> &'static str {
    match answer_event_type {
        Some(t) if t.ends_with("Accepted") => "accepted",
        Some(t) if t.ends_with("Refused") => "refused",
        // Submitted and not answered yet by the exit-entry administration.
        _ => "pending",
    }
}

async fn filing_results_pull(
    state: &AppState,
    unit: &CreditCode,
    request: &SignedRequest,
) -> Result<Reply, WireError> {
    let pull: messages::FilingResultsPull = business_data(request)?;
    let serial = serial_of("bbywlsh", SerialKind::Filing, &pull.bbywlsh)?;
    let log = state.commands.log();
    let submissions = log
        .events_with_key_prefix(&keys::filing_prefix(serial.as_str()))
        .await?;
    // Another unit's list answers exactly as a list that does not exist.
    let own = !submissions.is_empty()
        && submissions.iter().all(|event| {
            event.metadata["ei"]
                .as_str()
                .and_then(|ei| state.registry.get(ei))
                .and_then(|sender| sender.unit)
                .is_some_and(|sender_unit| sender_unit == unit.as_str())
        });
    if !own {
        return Err(WireError::new(
            ErrorCode::NotFound,
            format!("no filing list {serial} of unit {unit}"),
        ));
    }
    let answers = log
        .events_with_key_prefix(&keys::answer_prefix(serial.as_str()))
        .await?;
    let persons: Vec<Value> = submissions
        .iter()
        .map(|submission| {
            let answer = answers
                .iter()
                .find(|a| a.aggregate_id == submission.aggregate_id)
                .map(|a| a.event_type.as_str());
            json!({
                "rybs": submission.aggregate_id,
                "bbzt": answer_status(answer),
                "bblx": FilingKind::of_submission(&submission.event_type)
                    .map(FilingKind::code)
                    .unwrap_or_default(),
            })
        })
        .collect();
    let mut reply = Reply::new(serial.as_str(), false);
    reply.extra.insert("bbjg".into(), Value::Array(persons));
    Ok(reply)
}

// --- sjsb-cgsp --------------------------------------------------------------------------

async fn travel_approval(
    state: &AppState,
    unit: &CreditCode,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let report: messages::TravelApproval = business_data(request)?;
    let serial = serial_of("cgspywlsh", SerialKind::TravelApproval, &report.cgspywlsh)?;
    let holder = person_id(&report.rybs)?;
    let approval = ApprovalRecorded {
        holder: holder.clone(),
        unit: unit.clone(),
        destination: required("mdd", &report.mdd)?.to_string(),
        departure: business_date("cfsj", &report.cfsj)?,
        return_date: business_date("fhsj", &report.fhsj)?,
        reason: optional(&report.cgsy),
        document_type: document_type(&report.zjlx)?,
        approved_on: business_date("tysj", &report.tysj)?,
        form: signed_form("spbwj", &report.spbwj, "spbwjqm", &report.spbwjqm)?,
    };
    check_own_person(state, unit, &holder).await?;
    let outcome = state
        .commands
        .execute::<TravelApproval>(
            serial.as_str(),
            TravelApprovalCommand::Record(approval),
            metadata(
                request,
                received,
                Some(serial.as_str()),
                Some(serial.to_string()),
            ),
        )
        .await?;
    Ok(Reply::new(
        serial.as_str(),
        matches!(outcome, Outcome::Duplicate(_)),
    ))
}

/// Whether the travel approval a lend names covers it: a recorded approval of the document's
/// holder, valid on the day of the withdrawal (China time). Anything else (no serial, a
/// malformed or unknown one, another person's, expired or not yet valid) is `Missing`: the lend
/// is still recorded, and flagged.
pub(super) async fn lend_approval(
    state: &AppState,
    cgspywlsh: &str,
    holder: &PersonId,
    day: NaiveDate,
) -> Result<ApprovalCheck, WireError> {
    let Ok(serial) = cgspywlsh.parse::<BusinessSerial>() else {
        return Ok(ApprovalCheck::Missing);
    };
    if serial.kind() != SerialKind::TravelApproval {
        return Ok(ApprovalCheck::Missing);
    }
    let approval: TravelApproval = state.commands.load(serial.as_str()).await?;
    Ok(if approval.covers(holder, day) {
        ApprovalCheck::Valid
    } else {
        ApprovalCheck::Missing
    })
}

// --- sjsb-tyh ---------------------------------------------------------------------------

async fn consent_letter(
    state: &AppState,
    unit: &CreditCode,
    request: &SignedRequest,
    received: &Received<'_>,
) -> Result<Reply, WireError> {
    let report: messages::ConsentLetter = business_data(request)?;
    let serial = serial_of("tyhywlsh", SerialKind::ConsentLetter, &report.tyhywlsh)?;
    let holder = person_id(&report.rybs)?;
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
        holder: holder.clone(),
        unit: unit.clone(),
        travel_approval: travel_approval.as_ref().map(ToString::to_string),
        purpose,
        document_type: document_type(&report.zjlx)?,
        issued_on: business_date("kjrq", &report.kjrq)?,
        form: signed_form("tyhwj", &report.tyhwj, "tyhwjqm", &report.tyhwjqm)?,
    };
    check_own_person(state, unit, &holder).await?;
    // A letter made for an approval is for that approval's person. (The approval may be
    // reported after the letter; then there is nothing to compare yet.)
    if let Some(approval_serial) = &travel_approval {
        let approval: TravelApproval = state.commands.load(approval_serial.as_str()).await?;
        let foreign = approval.state == TravelApprovalState::Approved
            && approval.details.as_ref().map(|d| &d.holder) != Some(&holder);
        if foreign {
            return Err(invalid(
                "cgspywlsh",
                format!("travel approval {approval_serial} is another person's"),
            ));
        }
    }
    let outcome = state
        .commands
        .execute::<ConsentLetter>(
            serial.as_str(),
            ConsentLetterCommand::Record(letter),
            metadata(
                request,
                received,
                Some(serial.as_str()),
                Some(serial.to_string()),
            ),
        )
        .await?;
    Ok(Reply::new(
        serial.as_str(),
        matches!(outcome, Outcome::Duplicate(_)),
    ))
}
