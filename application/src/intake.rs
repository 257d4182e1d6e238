//! Who sent a report and how it arrived: what every use case is given besides the report.

use std::sync::Arc;

use custody_domain::business_time;
use custody_domain::cabinet::Cabinet;
use custody_domain::custody::Actor;
use custody_domain::identifiers::{sm3_hex, CreditCode};
use custody_domain::values::{DeviceSerial, Timestamp};
use custody_domain::EventMetadata;
use custody_eventlog::canonical_json;
use serde::Serialize;

use crate::ApplicationError;

/// An authenticated sender: its signature verified against a registered key.
#[derive(Debug, Clone)]
pub struct Principal {
    pub actor: Actor,
    /// The registered key's id (`c.ei`): a cabinet's device serial, a unit client's or the
    /// adapter's id.
    pub sender: String,
    /// The unit a cabinet is enrolled for or a unit client registered for.
    pub unit: Option<CreditCode>,
    /// For a cabinet: the device as its events make it (its drawers).
    pub cabinet: Option<Arc<Cabinet>>,
}

impl Principal {
    /// The unit this sender speaks for; a cabinet or unit client is always registered with
    /// one, so its absence is a damaged registration.
    pub fn own_unit(&self) -> Result<&CreditCode, ApplicationError> {
        self.unit.as_ref().ok_or_else(|| {
            ApplicationError::SenderMismatch(format!(
                "sender {} is registered for no unit",
                self.sender
            ))
        })
    }

    /// The cabinet's device serial.
    pub fn device(&self) -> Result<DeviceSerial, ApplicationError> {
        self.sender
            .parse()
            .map_err(|e| ApplicationError::invalid("ei", e))
    }

    /// Refuses a report that names another device than the one that signed it.
    pub fn check_device(&self, field: &str, named: &str) -> Result<(), ApplicationError> {
        if named == self.sender {
            Ok(())
        } else {
            Err(ApplicationError::SenderMismatch(format!(
                "{field} {named:?} is not the signing device {:?}",
                self.sender
            )))
        }
    }

    /// Refuses a report that names another unit than the sender's own.
    pub fn check_unit(&self, field: &str, named: &str) -> Result<(), ApplicationError> {
        if self.unit.as_ref().map(CreditCode::as_str) == Some(named) {
            Ok(())
        } else {
            Err(ApplicationError::SenderMismatch(format!(
                "{field} {named:?} is not the unit the sender is registered for"
            )))
        }
    }
}

/// One received report: its sender and what the events it yields record about its arrival.
#[derive(Debug, Clone)]
pub struct Intake {
    pub principal: Principal,
    /// `c.reqid`.
    pub request_id: String,
    /// SM3 of the request body as received.
    pub envelope_sm3: String,
    pub received_at: Timestamp,
}

impl Intake {
    /// A business time of the report is not ahead of its arrival by more than the allowed
    /// skew (docs/protocol.md, "Time rules").
    pub fn not_ahead(&self, field: &'static str, at: Timestamp) -> Result<(), ApplicationError> {
        Ok(business_time::not_ahead(field, at, self.received_at)?)
    }

    /// A business date of the report is not after the day it arrived (China time).
    pub fn date_not_ahead(
        &self,
        field: &'static str,
        date: chrono::NaiveDate,
    ) -> Result<(), ApplicationError> {
        Ok(business_time::date_not_ahead(
            field,
            date,
            self.received_at,
        )?)
    }

    /// The metadata of an event this report yields: its business serial (or record id), the
    /// key that makes it idempotent, and the fingerprint of its business content.
    pub fn metadata(
        &self,
        serial: Option<&str>,
        idempotency_key: Option<String>,
        content_sm3: Option<String>,
    ) -> EventMetadata {
        EventMetadata {
            business_serial: serial.map(str::to_string),
            idempotency_key,
            sender: self.principal.sender.clone(),
            request_id: Some(self.request_id.clone()),
            envelope_sm3: Some(self.envelope_sm3.clone()),
            recorded_at: Some(self.received_at),
            content_sm3,
        }
    }
}

/// SM3 of the canonical JSON of a report's business content (docs/protocol.md,
/// "Idempotency"): what two reports under one business serial must share to be duplicates.
pub fn fingerprint<T: Serialize>(content: &T) -> String {
    // The content types are plain data; serialising them cannot fail, and if it ever did the
    // empty fingerprint would still differ from any real one.
    let value = serde_json::to_value(content).unwrap_or_default();
    sm3_hex(canonical_json(&value).as_bytes())
}
