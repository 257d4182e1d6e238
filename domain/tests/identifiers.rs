//! SPEC §2 identifiers. Expected digests were computed with an independent tool
//! (`printf '%s' '414.E12345678' | openssl dgst -sm3`, OpenSSL 3.0) and pasted here.

use custody_domain::identifiers::*;

#[test]
fn sm3_matches_gmt_0004_vectors() {
    assert_eq!(
        sm3_hex(b"abc"),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
    assert_eq!(
        sm3_hex("abcd".repeat(16).as_bytes()),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

#[test]
fn document_ids_of_the_fixture_people_match_openssl() {
    let cases = [
        (
            "414",
            "E12345678",
            "f00510642f815ed4ae01fae5ba45a851239ae7f19244104c58bf5a538bf33780",
        ),
        (
            "513",
            "C98765432",
            "3cb8812e0a483334c97a8906f0cb2f853157db84c70777d467c3b7c7d8ca02ed",
        ),
    ];
    for (document_type, number, expected) in cases {
        let id = DocumentId::of(document_type.parse().unwrap(), &number.parse().unwrap());
        assert_eq!(id.as_str(), expected, "{document_type}.{number}");
    }
}

#[test]
fn person_ids_of_the_fixture_people_match_openssl() {
    let cases = [
        (
            "11010519491231002X",
            "张三",
            "384ad15fed0cef6d63988f4efa5e400fb1c7f5000fc1ad50ab64fb2050e24fe4",
        ),
        (
            "33010619900101123X",
            "欧阳娜娜",
            "10592e0181e475cea1683e98b38421209e9d6fc8dfbd85733d0d1c57f19c2bc3",
        ),
    ];
    for (citizen_id, name, expected) in cases {
        let id = PersonId::of(&citizen_id.parse().unwrap(), name);
        assert_eq!(id.as_str(), expected, "{citizen_id}{name}");
    }
}

#[test]
fn document_types_are_the_three_of_ga_t_517() {
    assert_eq!(
        "414".parse::<DocumentType>().unwrap(),
        DocumentType::OrdinaryPassport
    );
    assert_eq!(
        "513".parse::<DocumentType>().unwrap(),
        DocumentType::HongKongMacauPermit
    );
    assert_eq!(
        "517".parse::<DocumentType>().unwrap(),
        DocumentType::TaiwanPermit
    );
    for bad in ["", "415", "41", "4140", "abc"] {
        assert!(bad.parse::<DocumentType>().is_err(), "{bad}");
    }
}

#[test]
fn citizen_id_check_characters_are_told_apart() {
    for good in [
        "11010519491231002X",
        "33010619900101123X",
        "440524188001010014",
        "11010519491231002x",
    ] {
        assert!(good.parse::<CitizenId>().is_ok(), "{good} should be valid");
    }
    // Same 17 digits, every wrong check character.
    for wrong in "0123456789".chars() {
        let id = format!("11010519491231002{wrong}");
        assert_eq!(
            id.parse::<CitizenId>(),
            Err(IdentifierError::CitizenIdCheck(id.clone())),
            "{id}"
        );
    }
    for malformed in [
        "",
        "1101051949123100",
        "11010519491231002Y",
        "A1010519491231002X",
        "110105194912310020X",
    ] {
        assert!(
            matches!(
                malformed.parse::<CitizenId>(),
                Err(IdentifierError::CitizenIdFormat(_))
            ),
            "{malformed}"
        );
    }
}

#[test]
fn credit_code_check_characters_are_told_apart() {
    for good in [
        "91350100M000100Y43",
        "91110000600037341L",
        "91440300708461136T",
    ] {
        assert!(good.parse::<CreditCode>().is_ok(), "{good} should be valid");
    }
    // An independent implementation of GB 32100 expects '2' here, not '9'.
    assert!(matches!(
        "913100007178850939".parse::<CreditCode>(),
        Err(IdentifierError::CreditCodeCheck(_))
    ));
    assert!(matches!(
        "91350100M000100Y44".parse::<CreditCode>(),
        Err(IdentifierError::CreditCodeCheck(_))
    ));
    // I, O, S, V and Z are not in the alphabet.
    for malformed in [
        "91350100M000100Y4",
        "91350100M000100YI3",
        "91350100O000100Y43",
    ] {
        assert!(
            matches!(
                malformed.parse::<CreditCode>(),
                Err(IdentifierError::CreditCodeFormat(_))
            ),
            "{malformed}"
        );
    }
}

#[test]
fn business_serials_parse_and_refuse() {
    let good = "RG000123202611231030050000010123456789abcdef0123456789abcdef".to_string();
    assert_eq!(good.len(), BusinessSerial::LEN);
    let serial: BusinessSerial = good.parse().unwrap();
    assert_eq!(serial.kind(), SerialKind::Deposit);
    for prefix in ["CG", "ZX", "DZ", "PD", "BB", "SP", "TY"] {
        assert!(format!("{prefix}{}", &good[2..])
            .parse::<BusinessSerial>()
            .is_ok());
    }
    let bad = [
        format!("XX{}", &good[2..]),                             // unknown prefix
        good[..59].to_string(),                                  // short
        format!("{}A", &good[..59]),                             // upper-case hex
        format!("RG000123202613231030050000010{}", &good[29..]), // month 13
        format!("RG00012a{}", &good[8..]),                       // letter in terminal
    ];
    for serial in bad {
        assert!(serial.parse::<BusinessSerial>().is_err(), "{serial}");
    }
}

#[test]
fn digests_are_lower_case_hex_of_64() {
    let id = "f00510642f815ed4ae01fae5ba45a851239ae7f19244104c58bf5a538bf33780";
    assert!(id.parse::<DocumentId>().is_ok());
    assert!(id.to_uppercase().parse::<DocumentId>().is_err());
    assert!(id[..63].parse::<PersonId>().is_err());
}

#[test]
fn identifiers_cannot_be_deserialised_around_validation() {
    let ok: Result<CitizenId, _> = serde_json::from_str("\"11010519491231002X\"");
    assert!(ok.is_ok());
    let wrong: Result<CitizenId, _> = serde_json::from_str("\"110105194912310021\"");
    assert!(wrong.is_err());
}
