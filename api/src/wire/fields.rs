//! Reading wire fields into domain types, shared by every message family: each refusal names
//! the field and carries the code of the wire error table.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use custody_domain::identifiers::{BusinessSerial, SerialKind};
use custody_domain::values::china_standard_time;
use custody_protocol::{EnvelopeError, SignedRequest};
use serde::de::DeserializeOwned;

use crate::error::{ErrorCode, WireError};
use crate::server::AppState;

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
    state: &AppState,
    field: &str,
    base64: &str,
) -> Result<Vec<u8>, WireError> {
    state
        .platform_key
        .opener
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
