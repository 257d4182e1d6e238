//! Reading wire fields into domain types, shared by every message family: each refusal names
//! the field and carries the code of the wire error table.

use base64::Engine;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use custody_application::unit::FilingKind;
use custody_domain::identifiers::{
    BusinessSerial, DocumentId, DocumentNumber, DocumentType, PersonId, SerialKind,
};
use custody_domain::values::china_standard_time;
use custody_protocol::{EnvelopeError, EnvelopeOpener, SignedRequest};
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, WireError};

pub(super) fn business_data<T: DeserializeOwned>(request: &SignedRequest) -> Result<T, WireError> {
    request
        .business_data()
        .map_err(|e| WireError::new(ErrorCode::Malformed, e.to_string()))
}

pub(super) fn invalid(field: &str, reason: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::InvalidField, format!("{field}: {reason}"))
}

pub(super) fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, WireError> {
    if value.is_empty() {
        Err(WireError::new(
            ErrorCode::MissingField,
            format!("{field} is empty"),
        ))
    } else {
        Ok(value)
    }
}

pub(super) fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// `YYYYMMDDHHMMSS` in China Standard Time.
pub(super) fn business_time(field: &str, value: &str) -> Result<DateTime<FixedOffset>, WireError> {
    NaiveDateTime::parse_from_str(required(field, value)?, "%Y%m%d%H%M%S")
        .ok()
        .and_then(|t| t.and_local_timezone(china_standard_time()).single())
        .ok_or_else(|| invalid(field, format!("{value:?} is not YYYYMMDDHHMMSS")))
}

/// `YYYYMMDD`.
pub(super) fn business_date(field: &str, value: &str) -> Result<NaiveDate, WireError> {
    NaiveDate::parse_from_str(required(field, value)?, "%Y%m%d")
        .map_err(|_| invalid(field, format!("{value:?} is not YYYYMMDD")))
}

/// A business serial (YWLSH) of the given operation.
pub(super) fn serial_of(
    field: &str,
    kind: SerialKind,
    value: &str,
) -> Result<BusinessSerial, WireError> {
    let serial: BusinessSerial = required(field, value)?
        .parse()
        .map_err(|e| invalid(field, e))?;
    if serial.kind() != kind {
        return Err(invalid(
            field,
            format!("this operation's serial starts with {}", kind.prefix()),
        ));
    }
    Ok(serial)
}

/// Opens a GM/T 0010 envelope (`zjdata`, `rydata`) with the platform key.
pub(super) fn open_envelope(
    opener: &EnvelopeOpener,
    field: &str,
    base64: &str,
) -> Result<Vec<u8>, WireError> {
    opener
        .open_base64(required(field, base64)?)
        .map_err(|e| match e {
            EnvelopeError::NotForThisRecipient
            | EnvelopeError::KeyDecryptionFailed
            | EnvelopeError::CertificateKeyMismatch => {
                WireError::new(ErrorCode::EnvelopeRecipient, format!("{field}: {e}"))
            }
            other => WireError::new(ErrorCode::BadEnvelope, format!("{field}: {other}")),
        })
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

pub(super) fn document_number(value: &str) -> Result<DocumentNumber, WireError> {
    required("zjhm", value)?
        .parse()
        .map_err(|e| invalid("zjhm", e))
}

pub(super) fn document_id(zjlx: &str, zjhm: &str) -> Result<DocumentId, WireError> {
    Ok(DocumentId::of(
        document_type(zjlx)?,
        &document_number(zjhm)?,
    ))
}

/// ISO 3166-1 alpha-3: three capital letters.
pub(super) fn country_code(field: &'static str, value: &str) -> Result<String, WireError> {
    custody_domain::values::country_code(field, required(field, value)?).map_err(WireError::from)
}

/// An optional country code: `""` is none.
pub(super) fn optional_country(
    field: &'static str,
    value: &str,
) -> Result<Option<String>, WireError> {
    match value {
        "" => Ok(None),
        code => country_code(field, code).map(Some),
    }
}

/// A required free-text field (docs/protocol.md, "Field rules": no control characters, at most
/// `max_chars` characters).
pub(super) fn text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, WireError> {
    custody_domain::values::plain_text(field, required(field, value)?, max_chars)
        .map_err(WireError::from)
}

/// An optional free-text field: `""` is none.
pub(super) fn optional_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<Option<String>, WireError> {
    match value {
        "" => Ok(None),
        text => custody_domain::values::plain_text(field, text, max_chars)
            .map(Some)
            .map_err(WireError::from),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

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
