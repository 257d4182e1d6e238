//! Valid random identifiers and documents (SPEC §2), and the wire formats of times.
//!
//! Everything made here passes the domain's parsers: the simulator must only send what a real
//! cabinet could send, so that a refusal by the platform always means the platform refused.

use chrono::{DateTime, Days, FixedOffset, NaiveDate};
use custody_domain::identifiers::{
    CitizenId, CreditCode, DocumentId, DocumentNumber, DocumentType, PersonId, SerialKind,
};
use custody_domain::values::china_standard_time;
use custody_protocol::DocumentRecord;
use rand::{Rng, RngExt};

use super::error::SimulateError;

/// A moment given as Unix epoch milliseconds, in China Standard Time.
pub fn china_time(time_millis: i64) -> Result<DateTime<FixedOffset>, SimulateError> {
    DateTime::from_timestamp_millis(time_millis)
        .map(|utc| utc.with_timezone(&china_standard_time()))
        .ok_or(SimulateError::TimeOutOfRange(time_millis))
}

/// A business time on the wire: `YYYYMMDDHHMMSS`, China Standard Time.
pub fn wire_time(time_millis: i64) -> Result<String, SimulateError> {
    Ok(china_time(time_millis)?.format("%Y%m%d%H%M%S").to_string())
}

/// A date on the wire: `YYYYMMDD`.
pub fn wire_date(date: NaiveDate) -> String {
    date.format("%Y%m%d").to_string()
}

/// The current time as Unix epoch milliseconds (for callers that do not manage a clock).
pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A business serial (YWLSH): prefix + 6-digit terminal number + `YYYYMMDDHHMMSS` (China time)
/// + 6-digit sequence + 32 lower-case hex. Terminal number and sequence are taken modulo
///   1,000,000 so they always fit their six digits.
pub fn business_serial(
    kind: SerialKind,
    terminal_number: u32,
    time_millis: i64,
    sequence: u32,
) -> Result<String, SimulateError> {
    Ok(format!(
        "{}{:06}{}{:06}{}",
        kind.prefix(),
        terminal_number % 1_000_000,
        wire_time(time_millis)?,
        sequence % 1_000_000,
        uuid::Uuid::new_v4().simple()
    ))
}

/// A fresh request id (`c.reqid`): 32 lower-case hex characters.
pub fn new_reqid() -> String {
    custody_protocol::request::new_reqid(&mut rand::rng())
}

/// A random unified social credit code (GB 32100-2015) of a state organ: registration
/// authority `1` (institutional staffing), category `1` (organ), a real administrative division,
/// a 9-character organisation code with its GB 11714 check character, and the GB 32100 check
/// character.
pub fn random_credit_code<R: Rng + ?Sized>(rng: &mut R) -> String {
    let division = DIVISIONS[rng.random_range(0..DIVISIONS.len())];
    let organisation_body: String = (0..8)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect();
    let mut code = format!(
        "11{division}{organisation_body}{}",
        organisation_code_check(&organisation_body)
    );
    match CreditCode::check_character(code.as_bytes()) {
        Some(check) => code.push(check),
        // Digits, `X` and the division digits are all in the GB 32100 alphabet.
        None => unreachable!("generated credit code body {code:?} is outside the alphabet"),
    }
    code
}

/// The GB 11714 check character of an 8-digit organisation code body.
fn organisation_code_check(body: &str) -> char {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        check => char::from_digit(check, 10).unwrap_or('0'),
    }
}

/// A random citizen ID number (GB 11643) for a birth date and sex: a real administrative
/// division, the date, a 3-digit sequence whose parity encodes the sex (odd male), and the
/// ISO 7064 MOD 11-2 check character.
pub fn random_citizen_id<R: Rng + ?Sized>(
    rng: &mut R,
    birth_date: NaiveDate,
    male: bool,
) -> String {
    let division = DIVISIONS[rng.random_range(0..DIVISIONS.len())];
    let mut sequence = rng.random_range(0..500u32) * 2;
    if male {
        sequence += 1;
    }
    let first17 = format!("{division}{}{sequence:03}", wire_date(birth_date));
    let mut digits = [0u8; 17];
    digits.copy_from_slice(first17.as_bytes());
    format!("{first17}{}", CitizenId::check_character(&digits))
}

/// A random Chinese name with its Latin transcription (`SURNAME GIVENNAME`, as on a passport).
pub fn random_name<R: Rng + ?Sized>(rng: &mut R) -> (String, String) {
    let (surname, surname_latin) = SURNAMES[rng.random_range(0..SURNAMES.len())];
    let mut chinese = surname.to_owned();
    let mut latin = format!("{surname_latin} ");
    for _ in 0..rng.random_range(1..=2) {
        let (given, given_latin) = GIVEN_NAMES[rng.random_range(0..GIVEN_NAMES.len())];
        chinese.push_str(given);
        latin.push_str(given_latin);
    }
    (chinese, latin)
}

/// A random valid document record: type 414/513/517, number = the type's usual letter + 8
/// digits, a holder born 1960–1999 with a matching citizen ID and sex, expiring 2027–2036.
pub fn random_document_record<R: Rng + ?Sized>(rng: &mut R) -> DocumentRecord {
    let document_type = DocumentType::ALL[rng.random_range(0..DocumentType::ALL.len())];
    let letter = match document_type {
        DocumentType::OrdinaryPassport => 'E',
        DocumentType::HongKongMacauPermit => 'C',
        DocumentType::TaiwanPermit => 'L',
    };
    let birth_date = random_date(rng, 1960, 1999);
    let male = rng.random_bool(0.5);
    let (chinese_name, latin_name) = random_name(rng);
    DocumentRecord {
        document_type: document_type.code().to_owned(),
        document_number: format!("{letter}{:08}", rng.random_range(0..100_000_000u32)),
        citizen_id_number: random_citizen_id(rng, birth_date, male),
        chinese_name,
        latin_name,
        birth_date: wire_date(birth_date),
        sex: if male { "1" } else { "2" }.to_owned(),
        expiry_date: wire_date(random_date(rng, 2027, 2036)),
    }
}

/// A uniformly random day of the years `first..=last`.
fn random_date<R: Rng + ?Sized>(rng: &mut R, first: i32, last: i32) -> NaiveDate {
    let year = rng.random_range(first..=last);
    let start = NaiveDate::from_ymd_opt(year, 1, 1).unwrap_or_default();
    let days_in_year = if start.leap_year() { 366 } else { 365 };
    start
        .checked_add_days(Days::new(rng.random_range(0..days_in_year)))
        .unwrap_or(start)
}

/// The document identifier ZJBS of a record: lower-case hex SM3 of `ZJLX.ZJHM`.
pub fn document_id(record: &DocumentRecord) -> Result<String, SimulateError> {
    let document_type: DocumentType = record.document_type.parse()?;
    let number: DocumentNumber = record.document_number.parse()?;
    Ok(DocumentId::of(document_type, &number).to_string())
}

/// The person identifier RYBS: lower-case hex SM3 of the citizen ID followed by the Chinese name.
pub fn person_id(citizen_id: &str, chinese_name: &str) -> Result<String, SimulateError> {
    let citizen_id: CitizenId = citizen_id.parse()?;
    Ok(PersonId::of(&citizen_id, chinese_name).to_string())
}

/// A random device serial in the style of the source's `XJH-Q2555061`, marked as simulated.
pub fn random_device_serial<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("SIM-{:08}", rng.random_range(0..100_000_000u32))
}

/// A random 11-digit mobile number.
pub fn random_phone<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("13{:09}", rng.random_range(0..1_000_000_000u32))
}

/// Real county-level administrative division codes (GB/T 2260).
const DIVISIONS: [&str; 8] = [
    "110105", "110108", "310104", "330106", "440305", "510107", "420106", "320102",
];

const SURNAMES: [(&str, &str); 14] = [
    ("王", "WANG"),
    ("李", "LI"),
    ("张", "ZHANG"),
    ("刘", "LIU"),
    ("陈", "CHEN"),
    ("杨", "YANG"),
    ("黄", "HUANG"),
    ("赵", "ZHAO"),
    ("周", "ZHOU"),
    ("吴", "WU"),
    ("徐", "XU"),
    ("孙", "SUN"),
    ("欧阳", "OUYANG"),
    ("司马", "SIMA"),
];

const GIVEN_NAMES: [(&str, &str); 20] = [
    ("伟", "WEI"),
    ("芳", "FANG"),
    ("娜", "NA"),
    ("敏", "MIN"),
    ("静", "JING"),
    ("丽", "LI"),
    ("强", "QIANG"),
    ("磊", "LEI"),
    ("军", "JUN"),
    ("洋", "YANG"),
    ("勇", "YONG"),
    ("艳", "YAN"),
    ("杰", "JIE"),
    ("涛", "TAO"),
    ("明", "MING"),
    ("超", "CHAO"),
    ("秀英", "XIUYING"),
    ("华", "HUA"),
    ("平", "PING"),
    ("刚", "GANG"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use custody_domain::identifiers::BusinessSerial;

    #[test]
    fn credit_codes_pass_the_domain_parser() {
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let code = random_credit_code(&mut rng);
            let parsed: CreditCode = code.parse().unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(parsed.as_str(), code);
        }
    }

    #[test]
    fn organisation_code_check_matches_a_real_code() {
        // Huawei's credit code 914403001922038216 embeds organisation code 19220382-1.
        assert_eq!(organisation_code_check("19220382"), '1');
        assert!("914403001922038216".parse::<CreditCode>().is_ok());
        // 12345678: 3+14+27+40+25+48+28+16 = 201, 201 % 11 = 3, 11 - 3 = 8.
        assert_eq!(organisation_code_check("12345678"), '8');
        // Sum 0 → 11 → '0'.
        assert_eq!(organisation_code_check("00000000"), '0');
    }

    #[test]
    fn citizen_ids_pass_the_domain_parser_and_encode_birth_and_sex() {
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let birth = random_date(&mut rng, 1960, 1999);
            let male = rng.random_bool(0.5);
            let id = random_citizen_id(&mut rng, birth, male);
            assert!(id.parse::<CitizenId>().is_ok(), "{id}");
            assert_eq!(&id[6..14], wire_date(birth));
            let sequence_digit = id.as_bytes()[16] - b'0';
            assert_eq!(sequence_digit % 2 == 1, male, "{id}");
        }
    }

    #[test]
    fn fixture_citizen_ids_check_out() {
        // The fixtures' IDs, computed independently (Python).
        for id in ["11010519491231002X", "33010619900101123X"] {
            let mut digits = [0u8; 17];
            digits.copy_from_slice(&id.as_bytes()[..17]);
            assert_eq!(
                CitizenId::check_character(&digits),
                char::from(id.as_bytes()[17])
            );
        }
    }

    #[test]
    fn random_records_are_valid_and_fit_the_wire_layout() {
        let mut rng = rand::rng();
        for _ in 0..500 {
            let record = random_document_record(&mut rng);
            let bytes = record.to_bytes().unwrap();
            assert_eq!(DocumentRecord::parse(&bytes).unwrap(), record);
            record.document_type.parse::<DocumentType>().unwrap();
            let number: DocumentNumber = record.document_number.parse().unwrap();
            assert_eq!(number.as_str(), record.document_number);
            assert!(record.document_number[1..]
                .bytes()
                .all(|b| b.is_ascii_digit()));
            record.citizen_id_number.parse::<CitizenId>().unwrap();
            assert_eq!(&record.citizen_id_number[6..14], record.birth_date);
            let male = (record.citizen_id_number.as_bytes()[16] - b'0') % 2 == 1;
            assert_eq!(record.sex, if male { "1" } else { "2" });
            NaiveDate::parse_from_str(&record.expiry_date, "%Y%m%d").unwrap();
            assert!(!record.chinese_name.is_empty() && !record.latin_name.is_empty());
        }
    }

    #[test]
    fn document_id_is_sm3_of_type_dot_number() {
        let record = DocumentRecord {
            document_type: "414".into(),
            document_number: "E12345678".into(),
            ..DocumentRecord::default()
        };
        assert_eq!(
            document_id(&record).unwrap(),
            custody_domain::identifiers::sm3_hex(b"414.E12345678")
        );
        let bad = DocumentRecord {
            document_type: "999".into(),
            ..record
        };
        assert!(document_id(&bad).is_err());
    }

    #[test]
    fn business_serials_parse_with_kind_and_china_time() {
        // 2026-11-23 10:30:05 +08:00.
        let time = 1_795_401_005_000;
        for kind in SerialKind::ALL {
            let serial = business_serial(kind, 1_234_567, time, 42).unwrap();
            let parsed: BusinessSerial = serial.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.kind(), kind);
            assert_eq!(
                parsed.timestamp(),
                NaiveDate::from_ymd_opt(2026, 11, 23)
                    .unwrap()
                    .and_hms_opt(10, 30, 5)
                    .unwrap()
            );
            // Terminal number reduced to six digits, sequence zero-padded.
            assert_eq!(&serial[2..8], "234567");
            assert_eq!(&serial[22..28], "000042");
        }
        let a = business_serial(SerialKind::Deposit, 1, time, 1).unwrap();
        let b = business_serial(SerialKind::Deposit, 1, time, 1).unwrap();
        assert_ne!(a, b, "the hex tail makes every serial unique");
    }

    #[test]
    fn wire_time_is_china_standard_time() {
        assert_eq!(wire_time(1_795_401_005_000).unwrap(), "20261123103005");
        // Midnight UTC is 08:00 in China.
        assert_eq!(wire_time(0).unwrap(), "19700101080000");
        assert!(matches!(
            wire_time(i64::MAX),
            Err(SimulateError::TimeOutOfRange(_))
        ));
    }
}
