use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::CabinetEventKind;
use crate::identifiers::CreditCode;
use crate::values::Timestamp;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CabinetEvent {
    Enrolled(Enrolled),
    Activated(Activated),
    Disabled(Disabled),
    AlarmRaised(AlarmRaised),
}

/// One cabinet body driven by the touch terminal, with its drawer grid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CabinetBody {
    /// 证件柜序列号 (zjgxlh / ZZGSN)
    pub serial: String,
    pub rows: u16,
    pub columns: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolled {
    pub unit: CreditCode,
    pub model: String,
    pub bodies: Vec<CabinetBody>,
    /// The security module's SM2 public key, PEM SubjectPublicKeyInfo.
    pub public_key_pem: String,
}

/// A cabinet administrator the device names at initialisation (glylb).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Administrator {
    pub account: String,
    pub person: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activated {
    pub unit_name: String,
    pub contact: Option<String>,
    pub contact_phone: Option<String>,
    pub administrators: Vec<Administrator>,
    pub activated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: Option<String>,
}

/// A device alarm (tamper, illegal door opening, voltage, network loss, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmRaised {
    pub kind: String,
    pub content: String,
    pub raised_at: Timestamp,
}

impl CabinetEvent {
    pub fn kind(&self) -> CabinetEventKind {
        match self {
            CabinetEvent::Enrolled(_) => CabinetEventKind::Enrolled,
            CabinetEvent::Activated(_) => CabinetEventKind::Activated,
            CabinetEvent::Disabled(_) => CabinetEventKind::Disabled,
            CabinetEvent::AlarmRaised(_) => CabinetEventKind::AlarmRaised,
        }
    }
}

impl DomainEvent for CabinetEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
