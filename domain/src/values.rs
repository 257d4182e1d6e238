//! Value types shared by several aggregates.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::identifiers::{
    CitizenId, CreditCode, DocumentId, DocumentNumber, DocumentType, PersonId,
};
use crate::DomainError;

/// A moment with its offset; business times are China Standard Time (UTC+08:00) on the wire.
pub type Timestamp = DateTime<FixedOffset>;

/// China Standard Time, the offset of every business time on the wire.
pub fn china_standard_time() -> FixedOffset {
    // 8 hours is always a valid offset; the fallback is never taken.
    FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

/// SBXLH: a cabinet device serial, also the `ei` of its security module.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceSerial(String);

impl DeviceSerial {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for DeviceSerial {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(DeviceSerial(s.to_string()))
        } else {
            Err(DomainError::InvalidField {
                field: "sbxlh",
                reason: "1 to 64 letters, digits, '-' or '_'".into(),
            })
        }
    }
}

impl TryFrom<String> for DeviceSerial {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DeviceSerial> for String {
    fn from(value: DeviceSerial) -> String {
        value.0
    }
}

impl std::fmt::Display for DeviceSerial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A drawer: the cabinet body (ZZGSN / zjgxlh) and its row and column, counted from 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Drawer {
    pub body: String,
    pub row: u16,
    pub column: u16,
}

/// Where a document is when it is in a cabinet: whose cabinet, which device, which drawer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The unit the cabinet is enrolled for: the unit that holds the document.
    pub unit: CreditCode,
    pub device: DeviceSerial,
    pub drawer: Drawer,
}

/// The holder's sex as the record codes it (GB/T 2261.1: 1 male, 2 female, 0 unknown, 9 other).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Unknown,
    Male,
    Female,
    Unstated,
}

impl std::str::FromStr for Sex {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Sex::Unknown),
            "1" => Ok(Sex::Male),
            "2" => Ok(Sex::Female),
            "9" => Ok(Sex::Unstated),
            _ => Err(DomainError::InvalidField {
                field: "xb",
                reason: format!("{s:?} is not 0, 1, 2 or 9"),
            }),
        }
    }
}

/// The document and holder details of the fixed-width record a cabinet reads from the document
/// (SPEC §5: ZJLX, ZJHM, GMSFHM, ZWXM, YWXM, CSRQ, XB, YXQZ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    pub document_type: DocumentType,
    pub number: DocumentNumber,
    pub citizen_id: CitizenId,
    pub chinese_name: String,
    pub latin_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub valid_until: NaiveDate,
}

impl DocumentRecord {
    pub fn document_id(&self) -> DocumentId {
        DocumentId::of(self.document_type, &self.number)
    }

    pub fn holder_id(&self) -> PersonId {
        PersonId::of(&self.citizen_id, &self.chinese_name)
    }
}
