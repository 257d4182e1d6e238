//! The 137-byte document record: round trips and refusals.

mod common;

use common::*;
use custody_protocol::record::{RecordError, RecordField, RECORD_LEN};
use custody_protocol::DocumentRecord;

#[test]
fn round_trip() {
    for record in [record_1(), record_2()] {
        let bytes = record.to_bytes().unwrap();
        assert_eq!(bytes.len(), RECORD_LEN);
        assert_eq!(DocumentRecord::parse(&bytes).unwrap(), record);
    }
}

#[test]
fn fields_filled_to_the_brim_round_trip() {
    let record = DocumentRecord {
        document_type: "414".into(),
        document_number: "E12345678".into(),
        citizen_id_number: "11010519491231002X".into(),
        chinese_name: "张".repeat(15), // 45 bytes exactly
        latin_name: "A".repeat(45),
        birth_date: "19491231".into(),
        sex: "1".into(),
        expiry_date: "20320101".into(),
    };
    let bytes = record.to_bytes().unwrap();
    assert!(!bytes.contains(&0));
    assert_eq!(DocumentRecord::parse(&bytes).unwrap(), record);
}

#[test]
fn empty_latin_name_is_allowed() {
    let mut record = record_1();
    record.latin_name.clear();
    assert_eq!(
        DocumentRecord::parse(&record.to_bytes().unwrap()).unwrap(),
        record
    );
}

#[test]
fn wrong_lengths_are_refused() {
    let bytes = fixture_bytes("record-1.bin");
    assert_eq!(
        DocumentRecord::parse(&bytes[..136]),
        Err(RecordError::WrongLength { actual: 136 })
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        DocumentRecord::parse(&longer),
        Err(RecordError::WrongLength { actual: 138 })
    );
    assert_eq!(
        DocumentRecord::parse(&[]),
        Err(RecordError::WrongLength { actual: 0 })
    );
}

#[test]
fn bad_utf8_is_refused() {
    let mut bytes = fixture_bytes("record-1.bin");
    bytes[30] = 0xFF; // inside ZWXM (offset 30..75)
    assert_eq!(
        DocumentRecord::parse(&bytes),
        Err(RecordError::InvalidUtf8 {
            field: RecordField::ChineseName
        })
    );
}

#[test]
fn character_cut_at_field_end_is_refused() {
    // 15 CJK characters fill ZWXM (45 bytes); replacing the last byte with padding leaves the
    // final character cut after two of its three bytes.
    let mut record = record_1();
    record.chinese_name = "张".repeat(15);
    let mut bytes = record.to_bytes().unwrap();
    bytes[30 + 44] = 0;
    assert_eq!(
        DocumentRecord::parse(&bytes),
        Err(RecordError::InvalidUtf8 {
            field: RecordField::ChineseName
        })
    );
}

#[test]
fn byte_after_padding_is_refused() {
    let mut bytes = fixture_bytes("record-1.bin");
    // ZWXM is 张三 (6 bytes) at 30..36, then NULs; put a byte at field offset 40.
    bytes[30 + 40] = b'x';
    assert_eq!(
        DocumentRecord::parse(&bytes),
        Err(RecordError::ByteAfterPadding {
            field: RecordField::ChineseName,
            offset: 40
        })
    );
}

#[test]
fn leading_nul_with_content_is_refused() {
    let mut bytes = fixture_bytes("record-1.bin");
    bytes[3] = 0; // first byte of ZJHM
    assert_eq!(
        DocumentRecord::parse(&bytes),
        Err(RecordError::ByteAfterPadding {
            field: RecordField::DocumentNumber,
            offset: 1
        })
    );
}

#[test]
fn empty_mandatory_field_is_refused() {
    let mut bytes = fixture_bytes("record-1.bin");
    bytes[136] = 0; // XB at 128, YXQZ at 129..137: clear the expiry date
    for b in &mut bytes[129..137] {
        *b = 0;
    }
    assert_eq!(
        DocumentRecord::parse(&bytes),
        Err(RecordError::EmptyField {
            field: RecordField::ExpiryDate
        })
    );

    let mut record = record_1();
    record.sex.clear();
    assert_eq!(
        record.to_bytes(),
        Err(RecordError::EmptyField {
            field: RecordField::Sex
        })
    );
}

#[test]
fn overlong_fields_are_refused() {
    let mut record = record_1();
    record.document_number = "E123456789".into();
    assert_eq!(
        record.to_bytes(),
        Err(RecordError::FieldTooLong {
            field: RecordField::DocumentNumber,
            max_bytes: 9,
            actual_bytes: 10
        })
    );

    let mut record = record_1();
    record.chinese_name = "张".repeat(16); // 48 bytes
    assert_eq!(
        record.to_bytes(),
        Err(RecordError::FieldTooLong {
            field: RecordField::ChineseName,
            max_bytes: 45,
            actual_bytes: 48
        })
    );
}

#[test]
fn nul_inside_value_is_refused_on_build() {
    let mut record = record_1();
    record.latin_name = "ZHANG\0SAN".into();
    assert_eq!(
        record.to_bytes(),
        Err(RecordError::FieldContainsNul {
            field: RecordField::LatinName
        })
    );
}

#[test]
fn field_layout_matches_spec() {
    let widths: Vec<(&str, usize)> = RecordField::ALL
        .iter()
        .map(|field| (field.source_name(), field.width()))
        .collect();
    assert_eq!(
        widths,
        [
            ("ZJLX", 3),
            ("ZJHM", 9),
            ("GMSFHM", 18),
            ("ZWXM", 45),
            ("YWXM", 45),
            ("CSRQ", 8),
            ("XB", 1),
            ("YXQZ", 8)
        ]
    );
}
