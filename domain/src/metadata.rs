//! What every stored event carries besides its payload (SPEC §8): who sent it, under which
//! business serial and request, the hash of the original signed envelope, and when it was
//! recorded.

use std::collections::HashMap;

use chrono::{DateTime, FixedOffset};

/// Metadata of one command's events. Stored as a flat string map (cqrs-es's metadata shape).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventMetadata {
    /// The business serial (YWLSH, or a feed's record id) the event answers.
    pub business_serial: Option<String>,
    /// The key that makes the command idempotent: the same key never yields a second event.
    /// Usually the business serial; list feeds use `<kind>:<record id>`.
    pub idempotency_key: Option<String>,
    /// The sender: a security module id (`ei`), an operator, or `platform` for the scheduler
    /// and process managers.
    pub sender: String,
    /// The protocol request id (`reqid`) that carried the report.
    pub request_id: Option<String>,
    /// Lower-case hex SM3 of the original request body as received.
    pub envelope_sm3: Option<String>,
    /// When the platform recorded the event.
    pub recorded_at: Option<DateTime<FixedOffset>>,
    /// Lower-case hex SM3 of the report's business content (docs/protocol.md, "Idempotency"):
    /// a report sent again under the same idempotency key is a duplicate only when this matches.
    pub content_sm3: Option<String>,
}

impl EventMetadata {
    pub const BUSINESS_SERIAL: &'static str = "ywlsh";
    pub const IDEMPOTENCY_KEY: &'static str = "idempotency_key";
    pub const SENDER: &'static str = "ei";
    pub const REQUEST_ID: &'static str = "reqid";
    pub const ENVELOPE_SM3: &'static str = "envelope_sm3";
    pub const RECORDED_AT: &'static str = "recorded_at";
    pub const CONTENT_SM3: &'static str = "content_sm3";

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert(Self::SENDER.to_string(), self.sender.clone());
        let optional = [
            (Self::BUSINESS_SERIAL, self.business_serial.clone()),
            (Self::IDEMPOTENCY_KEY, self.idempotency_key.clone()),
            (Self::REQUEST_ID, self.request_id.clone()),
            (Self::ENVELOPE_SM3, self.envelope_sm3.clone()),
            (Self::RECORDED_AT, self.recorded_at.map(|t| t.to_rfc3339())),
            (Self::CONTENT_SM3, self.content_sm3.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        }
        map
    }

    pub fn from_map(map: &HashMap<String, String>) -> Self {
        EventMetadata {
            business_serial: map.get(Self::BUSINESS_SERIAL).cloned(),
            idempotency_key: map.get(Self::IDEMPOTENCY_KEY).cloned(),
            sender: map.get(Self::SENDER).cloned().unwrap_or_default(),
            request_id: map.get(Self::REQUEST_ID).cloned(),
            envelope_sm3: map.get(Self::ENVELOPE_SM3).cloned(),
            recorded_at: map
                .get(Self::RECORDED_AT)
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
            content_sm3: map.get(Self::CONTENT_SM3).cloned(),
        }
    }
}
