//! The fixed-width document record carried in `zjdata` (SPEC.md §5, source §2.5.5.5).
//!
//! 137 bytes: eight UTF-8 fields, each right-padded with NUL bytes to its width. Only the byte
//! layout is checked here; whether a value is a valid document number, date etc. is the domain's
//! business.

use std::fmt;

use thiserror::Error;

/// Length of a record in bytes.
pub const RECORD_LEN: usize = 137;

/// The fields of the record, in wire order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordField {
    /// ZJLX, document type code, 3 bytes.
    DocumentType,
    /// ZJHM, document number, 9 bytes.
    DocumentNumber,
    /// GMSFHM, citizen identity number, 18 bytes.
    CitizenIdNumber,
    /// ZWXM, name in Chinese characters, 45 bytes (15 CJK characters).
    ChineseName,
    /// YWXM, name in Latin letters, 45 bytes. The only field that may be empty.
    LatinName,
    /// CSRQ, date of birth `YYYYMMDD`, 8 bytes.
    BirthDate,
    /// XB, sex code, 1 byte.
    Sex,
    /// YXQZ, expiry date `YYYYMMDD`, 8 bytes.
    ExpiryDate,
}

impl RecordField {
    /// All fields in wire order.
    pub const ALL: [RecordField; 8] = [
        RecordField::DocumentType,
        RecordField::DocumentNumber,
        RecordField::CitizenIdNumber,
        RecordField::ChineseName,
        RecordField::LatinName,
        RecordField::BirthDate,
        RecordField::Sex,
        RecordField::ExpiryDate,
    ];

    /// Width of the field in bytes.
    pub const fn width(self) -> usize {
        match self {
            RecordField::DocumentType => 3,
            RecordField::DocumentNumber => 9,
            RecordField::CitizenIdNumber => 18,
            RecordField::ChineseName => 45,
            RecordField::LatinName => 45,
            RecordField::BirthDate => 8,
            RecordField::Sex => 1,
            RecordField::ExpiryDate => 8,
        }
    }

    /// The field's name in the source specification.
    pub const fn source_name(self) -> &'static str {
        match self {
            RecordField::DocumentType => "ZJLX",
            RecordField::DocumentNumber => "ZJHM",
            RecordField::CitizenIdNumber => "GMSFHM",
            RecordField::ChineseName => "ZWXM",
            RecordField::LatinName => "YWXM",
            RecordField::BirthDate => "CSRQ",
            RecordField::Sex => "XB",
            RecordField::ExpiryDate => "YXQZ",
        }
    }

    /// Whether the field must not be empty. The Latin-letter name may be absent on some
    /// documents; every other field identifies the document or its holder.
    pub const fn is_mandatory(self) -> bool {
        !matches!(self, RecordField::LatinName)
    }
}

impl fmt::Display for RecordField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.source_name())
    }
}

/// Why bytes are not a record, or a record does not fit the layout.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RecordError {
    /// The record is not exactly 137 bytes.
    #[error("record is {actual} bytes, expected {RECORD_LEN}")]
    WrongLength {
        /// The length found.
        actual: usize,
    },
    /// A field's bytes (before padding) are not UTF-8; also a character cut at the field end.
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: RecordField,
    },
    /// A non-NUL byte follows the NUL padding inside a field.
    #[error("field {field} has a non-NUL byte at offset {offset} after its padding")]
    ByteAfterPadding {
        /// The field.
        field: RecordField,
        /// Offset of the byte within the field.
        offset: usize,
    },
    /// A mandatory field is empty.
    #[error("mandatory field {field} is empty")]
    EmptyField {
        /// The field.
        field: RecordField,
    },
    /// A value does not fit its field.
    #[error("field {field} is {actual_bytes} bytes of UTF-8, at most {max_bytes} fit")]
    FieldTooLong {
        /// The field.
        field: RecordField,
        /// The field width.
        max_bytes: usize,
        /// The value's length in bytes.
        actual_bytes: usize,
    },
    /// A value contains a NUL byte, which would be read back as padding.
    #[error("field {field} contains a NUL byte")]
    FieldContainsNul {
        /// The field.
        field: RecordField,
    },
}

/// A document record with its padding removed. Field names in the source in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DocumentRecord {
    /// Document type code (ZJLX), e.g. `414` ordinary passport.
    pub document_type: String,
    /// Document number (ZJHM).
    pub document_number: String,
    /// Citizen identity number (GMSFHM).
    pub citizen_id_number: String,
    /// Name in Chinese characters (ZWXM).
    pub chinese_name: String,
    /// Name in Latin letters (YWXM); may be empty.
    pub latin_name: String,
    /// Date of birth `YYYYMMDD` (CSRQ).
    pub birth_date: String,
    /// Sex code (XB).
    pub sex: String,
    /// Expiry date `YYYYMMDD` (YXQZ).
    pub expiry_date: String,
}

impl DocumentRecord {
    /// The value of `field`.
    pub fn field(&self, field: RecordField) -> &str {
        match field {
            RecordField::DocumentType => &self.document_type,
            RecordField::DocumentNumber => &self.document_number,
            RecordField::CitizenIdNumber => &self.citizen_id_number,
            RecordField::ChineseName => &self.chinese_name,
            RecordField::LatinName => &self.latin_name,
            RecordField::BirthDate => &self.birth_date,
            RecordField::Sex => &self.sex,
            RecordField::ExpiryDate => &self.expiry_date,
        }
    }

    fn field_mut(&mut self, field: RecordField) -> &mut String {
        match field {
            RecordField::DocumentType => &mut self.document_type,
            RecordField::DocumentNumber => &mut self.document_number,
            RecordField::CitizenIdNumber => &mut self.citizen_id_number,
            RecordField::ChineseName => &mut self.chinese_name,
            RecordField::LatinName => &mut self.latin_name,
            RecordField::BirthDate => &mut self.birth_date,
            RecordField::Sex => &mut self.sex,
            RecordField::ExpiryDate => &mut self.expiry_date,
        }
    }

    /// Parses a 137-byte record.
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        if bytes.len() != RECORD_LEN {
            return Err(RecordError::WrongLength {
                actual: bytes.len(),
            });
        }
        let mut record = DocumentRecord::default();
        let mut offset = 0;
        for field in RecordField::ALL {
            let raw = &bytes[offset..offset + field.width()];
            offset += field.width();
            let content_len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            if let Some(stray) = raw[content_len..].iter().position(|&b| b != 0) {
                return Err(RecordError::ByteAfterPadding {
                    field,
                    offset: content_len + stray,
                });
            }
            let value = std::str::from_utf8(&raw[..content_len])
                .map_err(|_| RecordError::InvalidUtf8 { field })?;
            if value.is_empty() && field.is_mandatory() {
                return Err(RecordError::EmptyField { field });
            }
            *record.field_mut(field) = value.to_owned();
        }
        Ok(record)
    }

    /// Lays the record out in 137 bytes, refusing values that would not read back the same.
    pub fn to_bytes(&self) -> Result<[u8; RECORD_LEN], RecordError> {
        let mut bytes = [0u8; RECORD_LEN];
        let mut offset = 0;
        for field in RecordField::ALL {
            let value = self.field(field).as_bytes();
            if value.contains(&0) {
                return Err(RecordError::FieldContainsNul { field });
            }
            if value.len() > field.width() {
                return Err(RecordError::FieldTooLong {
                    field,
                    max_bytes: field.width(),
                    actual_bytes: value.len(),
                });
            }
            if value.is_empty() && field.is_mandatory() {
                return Err(RecordError::EmptyField { field });
            }
            bytes[offset..offset + value.len()].copy_from_slice(value);
            offset += field.width();
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_sum_to_record_len() {
        let total: usize = RecordField::ALL.iter().map(|f| f.width()).sum();
        assert_eq!(total, RECORD_LEN);
    }
}
