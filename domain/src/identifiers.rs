//! SPEC §2: the identifiers of the platform, as types that parse and refuse bad input.
//!
//! A value of one of these types is valid by construction; the raw string is only ever seen at
//! the wire boundary.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use sm3::{Digest, Sm3};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("document type {0:?} is not 414, 513 or 517")]
    DocumentType(String),
    #[error("document number {0:?} is not one letter followed by 8 letters or digits")]
    DocumentNumber(String),
    #[error("citizen ID {0:?} is not 17 digits followed by a digit or X")]
    CitizenIdFormat(String),
    #[error("citizen ID {0:?} has a wrong check character (ISO 7064 MOD 11-2)")]
    CitizenIdCheck(String),
    #[error("unified social credit code {0:?} is not 18 characters of the GB 32100 alphabet")]
    CreditCodeFormat(String),
    #[error("unified social credit code {0:?} has a wrong check character (GB 32100)")]
    CreditCodeCheck(String),
    #[error("business serial {0:?} is malformed: {1}")]
    BusinessSerial(String, &'static str),
    #[error("{0:?} is not a lower-case hex SM3 digest")]
    Digest(String),
    #[error("name must not be empty")]
    EmptyName,
}

/// Lower-case hex of SM3 over `data`.
pub fn sm3_hex(data: &[u8]) -> String {
    let digest = Sm3::digest(data);
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// ZJLX, per GA/T 517-2004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DocumentType {
    /// 414 普通护照
    OrdinaryPassport,
    /// 513 往来港澳通行证
    HongKongMacauPermit,
    /// 517 大陆居民往来台湾通行证
    TaiwanPermit,
}

impl DocumentType {
    pub const ALL: [DocumentType; 3] = [
        DocumentType::OrdinaryPassport,
        DocumentType::HongKongMacauPermit,
        DocumentType::TaiwanPermit,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DocumentType::OrdinaryPassport => "414",
            DocumentType::HongKongMacauPermit => "513",
            DocumentType::TaiwanPermit => "517",
        }
    }
}

impl FromStr for DocumentType {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.code() == s)
            .ok_or_else(|| IdentifierError::DocumentType(s.to_string()))
    }
}

/// ZJHM: one letter followed by 8 letters or digits, upper-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentNumber(String);

impl FromStr for DocumentNumber {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let bytes = upper.as_bytes();
        let well_formed = bytes.len() == 9
            && bytes[0].is_ascii_uppercase()
            && bytes[1..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if well_formed {
            Ok(DocumentNumber(upper))
        } else {
            Err(IdentifierError::DocumentNumber(s.to_string()))
        }
    }
}

/// GMSFHM: 18-character citizen ID number with its ISO 7064 MOD 11-2 check character.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CitizenId(String);

impl CitizenId {
    /// The check character of the first 17 digits (ISO 7064 MOD 11-2, as GB 11643 uses it).
    pub fn check_character(first17: &[u8; 17]) -> char {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
        let sum: u32 = first17
            .iter()
            .zip(WEIGHTS)
            .map(|(digit, weight)| u32::from(digit - b'0') * weight)
            .sum();
        CHECK[(sum % 11) as usize]
    }

    /// Masked for readers without the `pii` scope: first 6 and last 4 characters (SPEC §7).
    pub fn masked(&self) -> String {
        mask(&self.0, 6, 4)
    }
}

impl FromStr for CitizenId {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() != 18
            || !bytes[..17].iter().all(u8::is_ascii_digit)
            || !(bytes[17].is_ascii_digit() || bytes[17] == b'X')
        {
            return Err(IdentifierError::CitizenIdFormat(s.to_string()));
        }
        let mut first17 = [0u8; 17];
        first17.copy_from_slice(&bytes[..17]);
        if Self::check_character(&first17) as u8 != bytes[17] {
            return Err(IdentifierError::CitizenIdCheck(s.to_string()));
        }
        Ok(CitizenId(upper))
    }
}

/// TYSHXYDM: the 18-character unified social credit code of a unit, GB 32100-2015.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CreditCode(String);

impl CreditCode {
    /// GB 32100's 31-character alphabet (no I, O, S, V, Z).
    const ALPHABET: &'static [u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

    /// The check character of the first 17 characters, or None if one is outside the alphabet.
    pub fn check_character(first17: &[u8]) -> Option<char> {
        const WEIGHTS: [usize; 17] = [
            1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
        ];
        let mut sum = 0usize;
        for (c, weight) in first17.iter().zip(WEIGHTS) {
            sum += Self::ALPHABET.iter().position(|a| a == c)? * weight;
        }
        let check = (31 - sum % 31) % 31;
        Some(Self::ALPHABET[check] as char)
    }
}

impl FromStr for CreditCode {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let bytes = upper.as_bytes();
        if bytes.len() != 18 || !bytes.iter().all(|b| Self::ALPHABET.contains(b)) {
            return Err(IdentifierError::CreditCodeFormat(s.to_string()));
        }
        match Self::check_character(&bytes[..17]) {
            Some(check) if check as u8 == bytes[17] => Ok(CreditCode(upper)),
            _ => Err(IdentifierError::CreditCodeCheck(s.to_string())),
        }
    }
}

/// The operation a business serial belongs to: its two-letter prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SerialKind {
    /// RG 入柜
    Deposit,
    /// CG 出柜
    Withdrawal,
    /// ZX 注销
    Cancellation,
    /// DZ 对账
    Reconciliation,
    /// PD 盘点
    Inventory,
    /// BB 报备
    Filing,
    /// SP 审批
    TravelApproval,
    /// TY 同意函
    ConsentLetter,
}

impl SerialKind {
    pub const ALL: [SerialKind; 8] = [
        SerialKind::Deposit,
        SerialKind::Withdrawal,
        SerialKind::Cancellation,
        SerialKind::Reconciliation,
        SerialKind::Inventory,
        SerialKind::Filing,
        SerialKind::TravelApproval,
        SerialKind::ConsentLetter,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            SerialKind::Deposit => "RG",
            SerialKind::Withdrawal => "CG",
            SerialKind::Cancellation => "ZX",
            SerialKind::Reconciliation => "DZ",
            SerialKind::Inventory => "PD",
            SerialKind::Filing => "BB",
            SerialKind::TravelApproval => "SP",
            SerialKind::ConsentLetter => "TY",
        }
    }
}

/// YWLSH: prefix + 6-digit terminal + YYYYMMDDHHMMSS + 6-digit sequence + 32 lower-case hex.
/// The idempotency key of every reported operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BusinessSerial(String);

impl BusinessSerial {
    pub const LEN: usize = 2 + 6 + 14 + 6 + 32;

    pub fn kind(&self) -> SerialKind {
        let prefix = &self.0[..2];
        SerialKind::ALL
            .into_iter()
            .find(|k| k.prefix() == prefix)
            .unwrap_or(SerialKind::Deposit)
    }

    /// The China Standard Time moment embedded in the serial.
    pub fn timestamp(&self) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(&self.0[8..22], "%Y%m%d%H%M%S").unwrap_or_default()
    }
}

impl FromStr for BusinessSerial {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |why| Err(IdentifierError::BusinessSerial(s.to_string(), why));
        if !s.is_ascii() || s.len() != Self::LEN {
            return refuse("must be 60 ASCII characters");
        }
        if !SerialKind::ALL.iter().any(|k| s.starts_with(k.prefix())) {
            return refuse("unknown operation prefix");
        }
        if !s[2..28].bytes().all(|b| b.is_ascii_digit()) {
            return refuse("terminal, time and sequence must be digits");
        }
        if NaiveDateTime::parse_from_str(&s[8..22], "%Y%m%d%H%M%S").is_err() {
            return refuse("time is not a valid YYYYMMDDHHMMSS");
        }
        if !s[28..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return refuse("last 32 characters must be lower-case hex");
        }
        Ok(BusinessSerial(s.to_string()))
    }
}

fn parse_digest(s: &str) -> Result<String, IdentifierError> {
    if s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(s.to_string())
    } else {
        Err(IdentifierError::Digest(s.to_string()))
    }
}

/// ZJBS: lower-case hex SM3 of `ZJLX + "." + ZJHM`. The Document aggregate's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentId(String);

impl DocumentId {
    pub fn of(document_type: DocumentType, number: &DocumentNumber) -> Self {
        DocumentId(sm3_hex(
            format!("{}.{}", document_type.code(), number.as_str()).as_bytes(),
        ))
    }
}

impl FromStr for DocumentId {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_digest(s).map(DocumentId)
    }
}

/// RYBS: lower-case hex SM3 of GMSFHM immediately followed by the Chinese name. The Person
/// aggregate's id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonId(String);

impl PersonId {
    pub fn of(citizen_id: &CitizenId, chinese_name: &str) -> Self {
        PersonId(sm3_hex(
            format!("{}{}", citizen_id.as_str(), chinese_name).as_bytes(),
        ))
    }
}

impl FromStr for PersonId {
    type Err = IdentifierError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_digest(s).map(PersonId)
    }
}

/// Masks all but the first `head` and last `tail` characters with `*`.
pub fn mask(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= head + tail {
        return "*".repeat(chars.len());
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i >= chars.len() - tail {
                *c
            } else {
                '*'
            }
        })
        .collect()
}

impl DocumentNumber {
    /// Masked for readers without the `pii` scope: first 4 and last 3 characters (SPEC §7).
    pub fn masked(&self) -> String {
        mask(&self.0, 4, 3)
    }
}

/// The string-backed identifiers share their plumbing: `as_str`, `Display`, and the serde
/// conversions that route deserialisation through `FromStr`, so a stored or wire value can never
/// bypass validation.
macro_rules! string_identifier {
    ($($name:ident),*) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdentifierError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    )*};
}

string_identifier!(
    DocumentNumber,
    CitizenId,
    CreditCode,
    BusinessSerial,
    DocumentId,
    PersonId
);

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for DocumentType {
    type Error = IdentifierError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DocumentType> for String {
    fn from(value: DocumentType) -> String {
        value.code().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_number_is_upper_cased_and_shaped() {
        assert_eq!(
            "e12345678".parse::<DocumentNumber>().unwrap().as_str(),
            "E12345678"
        );
        assert!("EA1234567".parse::<DocumentNumber>().is_ok());
        for bad in [
            "",
            "E1234567",
            "E123456789",
            "112345678",
            "E1234567-",
            "Ｅ12345678",
        ] {
            assert!(bad.parse::<DocumentNumber>().is_err(), "{bad}");
        }
    }

    #[test]
    fn masks_keep_head_and_tail() {
        let id: CitizenId = "11010519491231002X".parse().unwrap();
        assert_eq!(id.masked(), "110105********002X");
        let number: DocumentNumber = "E12345678".parse().unwrap();
        assert_eq!(number.masked(), "E123**678");
    }

    #[test]
    fn business_serial_parts() {
        let s = format!("RG000123{}000001{}", "20261123103005", "0".repeat(32));
        let serial: BusinessSerial = s.parse().unwrap();
        assert_eq!(serial.kind(), SerialKind::Deposit);
        assert_eq!(
            serial.timestamp().format("%Y-%m-%d %H:%M:%S").to_string(),
            "2026-11-23 10:30:05"
        );
    }
}
