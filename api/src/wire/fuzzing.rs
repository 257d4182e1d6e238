//! The fuzz targets' way in (fuzz/fuzz_targets/bdata.rs): one message's bdata read exactly as
//! its handler reads it, into the use case's report, with nothing stored and no state
//! consulted. Not part of the service's interface.

use base64::Engine;
use custody_application::Principal;
use custody_domain::custody::Actor;
use custody_protocol::{EnvelopeOpener, SignedRequest};

use super::messages::MessageType;
use super::{cabinet, exit_entry, reconciliation, unit};
use crate::error::{ErrorCode, WireError};

/// The unit the unit-client messages are read for (a valid credit code of the test data).
const UNIT: &str = "914403001922038216";

/// Reads `bdata` (the decoded business data) as message `mstype`; list items are each read on
/// their own, as the handlers do, and the first refusal is returned. `zjdata` and `rydata` are
/// opened with `opener`. Refuses an unknown `mstype` as the ingress does.
pub fn parse_bdata(mstype: &str, bdata: &[u8], opener: &EnvelopeOpener) -> Result<(), WireError> {
    let message = MessageType::parse(mstype).ok_or_else(|| {
        WireError::new(
            ErrorCode::UnsupportedMstype,
            format!("this service does not take {mstype:?}"),
        )
    })?;
    let request = carrying(mstype, bdata);
    let principal = unit_client()?;
    match message {
        MessageType::CabinetInit => cabinet::activation_report(&request).map(drop),
        MessageType::Heartbeat => cabinet::heartbeat_status(&request).map(drop),
        MessageType::DocumentOperation => {
            cabinet::document_operation_report(opener, &request).map(drop)
        }
        MessageType::Cancellation => cabinet::cancellation_report(&request).map(drop),
        MessageType::Alarm => cabinet::alarm_report(&request).map(drop),
        MessageType::Reconciliation => reconciliation::read_batch(&request).map(drop),
        MessageType::ReminderPull => cabinet::reminder_pull_names(&request).map(drop),
        MessageType::BorderCrossings => each(exit_entry::read_records(&request)?, |item| {
            exit_entry::read_border_crossing(item).map(drop)
        }),
        MessageType::IssuedDocuments => each(exit_entry::read_records(&request)?, |item| {
            exit_entry::read_issuance(item).map(drop)
        }),
        MessageType::FilingResults => {
            let (_, items) = exit_entry::read_filing_results(&request)?;
            each(items, |item| exit_entry::read_filing_answer(item).map(drop))
        }
        MessageType::FilingList => {
            let (_, items) = unit::read_filing_list(&request, |named| {
                Ok(principal.check_unit("tyshxydm", named)?)
            })?;
            each(items, |item| {
                unit::read_filing_entry(opener, item).map(drop)
            })
        }
        MessageType::FilingResultsPull => unit::read_filing_results_pull(&request).map(drop),
        MessageType::TravelApproval => unit::read_travel_approval(&principal, &request).map(drop),
        MessageType::ConsentLetter => unit::read_consent_letter(&principal, &request).map(drop),
    }
}

/// A request carrying `bdata` as the handlers get it (signatures are not theirs to check).
fn carrying(mstype: &str, bdata: &[u8]) -> SignedRequest {
    SignedRequest {
        version: custody_protocol::request::PROTOCOL_VERSION.to_owned(),
        mstype: mstype.to_owned(),
        c: custody_protocol::request::RequestControl {
            coding: custody_protocol::request::CODING_BASE64.to_owned(),
            reqid: "0".repeat(32),
            time: "0".to_owned(),
            sid: String::new(),
            ai: custody_protocol::request::ALGORITHM_SM2.to_owned(),
            ki: String::new(),
            ei: String::new(),
        },
        s: custody_protocol::request::RequestSignatures {
            env: String::new(),
            sig: String::new(),
            rsig: String::new(),
        },
        bdata: base64::engine::general_purpose::STANDARD.encode(bdata),
    }
}

fn unit_client() -> Result<Principal, WireError> {
    Ok(Principal {
        actor: Actor::UnitClient,
        sender: "fuzz-unit-client".to_owned(),
        unit: Some(
            UNIT.parse()
                .map_err(|e| WireError::internal("the fuzzing unit's credit code", e))?,
        ),
        cabinet: None,
    })
}

/// Every item read, the first refusal kept (a handler answers each item; one is enough here).
fn each(
    items: Vec<serde_json::Value>,
    mut read: impl FnMut(&serde_json::Value) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let mut first = Ok(());
    for item in &items {
        if let (Err(error), Ok(())) = (read(item), &first) {
            first = Err(error);
        }
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opener() -> EnvelopeOpener {
        let mut rng = rand::rng();
        EnvelopeOpener::new(&custody_protocol::keys::generate_secret_key(&mut rng))
    }

    #[test]
    fn every_message_is_read_and_garbage_refused() {
        let opener = opener();
        assert!(parse_bdata("sjsb-xt", br#"{"sbxlh":"XJH-Q2555061"}"#, &opener).is_ok());
        assert!(parse_bdata("sjsb-xt", b"{", &opener).is_err());
        assert_eq!(
            parse_bdata("nope", b"{}", &opener).map_err(|e| e.code),
            Err(ErrorCode::UnsupportedMstype)
        );
        assert_eq!(
            parse_bdata("sjsb-tyh", b"{}", &opener).map_err(|e| e.code),
            Err(ErrorCode::Malformed)
        );
    }
}
