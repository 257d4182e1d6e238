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

/// An ISO 3166-1 alpha-3 country or region code (`mdd`, `gjdq`), checked against the standard's
/// table (the `celes` crate): `HKG`, `MAC` and `TWN` are in it, as the exit-entry administration
/// uses them.
pub fn country_code(field: &'static str, value: &str) -> Result<String, DomainError> {
    let known = value.len() == 3
        && value.bytes().all(|b| b.is_ascii_uppercase())
        && celes::Country::from_alpha3(value).is_ok();
    if known {
        Ok(value.to_string())
    } else {
        Err(DomainError::InvalidField {
            field,
            reason: format!("{value:?} is not an ISO 3166-1 alpha-3 code"),
        })
    }
}

/// A free-text field as the platform keeps and shows it: at most `max_chars` characters, with
/// no control characters (NUL, line breaks, escape) and no bidirectional overrides (U+202A to
/// U+202E, U+2066 to U+2069), which would make a list read other than it is.
pub fn plain_text(
    field: &'static str,
    value: &str,
    max_chars: usize,
) -> Result<String, DomainError> {
    let refuse = |reason: String| Err(DomainError::InvalidField { field, reason });
    if value.chars().count() > max_chars {
        return refuse(format!("longer than {max_chars} characters"));
    }
    let hidden = |c: char| {
        c.is_control()
            || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if let Some(c) = value.chars().find(|c| hidden(*c)) {
        return refuse(format!("holds the character U+{:04X}", u32::from(c)));
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod text_rules {
    use super::*;

    #[test]
    fn country_codes_come_from_the_table() {
        for known in ["HKG", "MAC", "TWN", "FRA", "USA", "CHN"] {
            assert_eq!(country_code("gjdq", known).as_deref(), Ok(known));
        }
        for unknown in ["XXX", "hkg", "HK", "HKGX", "", "H1G", "ZZZ"] {
            assert!(country_code("gjdq", unknown).is_err(), "{unknown}");
        }
    }

    #[test]
    fn text_refuses_hidden_characters_and_length() {
        assert_eq!(
            plain_text("qzyt", "探亲 visit", 10).as_deref(),
            Ok("探亲 visit")
        );
        for bad in [
            "a\0b",
            "line\nbreak",
            "\u{202E}evil",
            "tab\there",
            "\u{2066}x",
        ] {
            assert!(plain_text("qzyt", bad, 100).is_err(), "{bad:?}");
        }
        assert!(plain_text("qzyt", &"字".repeat(11), 10).is_err());
        assert!(plain_text("qzyt", &"字".repeat(10), 10).is_ok());
    }
}

/// A personal value as an event holds it once read from the log: the value itself, or the mark
/// left in its place after its person's data key was destroyed (erasure by person,
/// docs/personal-data.md). Stored events always hold the value (sealed); the mark exists only
/// in what the log's opener hands back, so an erased person's history still folds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Personal<T> {
    Known(T),
    Erased(ErasedValue),
}

/// Where an erased person's value was: only whose it was is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErasedValue {
    pub erased_for: PersonId,
}

impl<T> Personal<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Erased(_) => None,
        }
    }

    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known(value) => Some(value),
            Personal::Erased(_) => None,
        }
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Known(value)
    }
}
