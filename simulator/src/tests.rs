//! Tests of the simulator without the real service: its signatures against the real `openssl`
//! command, its envelopes against the protocol crate and `openssl`, its wire shapes against the
//! shared fixture, and the load generator against a small fake service on loopback.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::NaiveDate;
use custody_domain::identifiers::{BusinessSerial, CreditCode, SerialKind};
use custody_protocol::envelope::{self, EnvelopeOpener};
use custody_protocol::keys::{self, GeneratedKeyPair};
use custody_protocol::{sm2enc, DocumentRecord, SignedRequest, Sm2Verifier};
use serde_json::Value;

use super::cabinet::{
    business_serial_of, message_type, ActivationData, AlarmData, CabinetBody, CancellationData,
    CustodyReportData, HeartbeatData,
};
use super::generate::{business_serial, document_id, random_credit_code, random_document_record};
use super::http::{http_client, post, provision_fleet, OpsClient, ServiceReply};
use super::load::{run_load, LatencySummary, LoadConfig, StopReason};
use super::*;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const DISTID: &str = "distid:1234567812345678";
/// 2026-11-23 10:30:05 +08:00, the fixture's `c.time`.
const TIME: i64 = 1_795_401_005_000;

// ---------------------------------------------------------------------------------------------
// Helpers

fn platform_key() -> GeneratedKeyPair {
    keys::generate_platform_encryption_key(
        "CN=platform-enc,O=Custody Test,C=CN",
        Duration::from_secs(24 * 3600),
        &mut rand::rng(),
    )
    .expect("generate a platform key")
}

fn cabinet_for(platform: &GeneratedKeyPair) -> SimulatedCabinet {
    let unit = random_credit_code(&mut rand::rng());
    let spec = CabinetSpec::random(&mut rand::rng(), &unit, "测试单位");
    SimulatedCabinet::new(spec, &platform.certificate_pem).expect("a simulated cabinet")
}

fn business_data(request: &SignedRequest) -> Value {
    request.business_data().expect("bdata is JSON")
}

/// A temporary directory removed on drop (the api crate has no `tempfile`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "custody-simulate-{}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    fn file(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether an OpenSSL 3 `openssl` is on the PATH (SM2 `-rawin` needs 3.x).
fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).starts_with("OpenSSL 3"),
        Err(_) => false,
    }
}

macro_rules! require_openssl {
    () => {
        if !openssl_available() {
            eprintln!("skipping: no OpenSSL 3 `openssl` on PATH");
            return;
        }
    };
}

fn openssl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

fn fixture_text(name: &str) -> Option<String> {
    std::fs::read_to_string(fixtures_dir().join(name)).ok()
}

/// One request of every kind the simulator signs.
fn every_request(cabinet: &SimulatedCabinet) -> Vec<SignedRequest> {
    let record = random_document_record(&mut rand::rng());
    let drawer = cabinet.drawer(3);
    let trip = Trip {
        purpose: "探亲".into(),
        destination: "HKG".into(),
        travel_approval_serial: Some(
            business_serial(SerialKind::TravelApproval, 7, TIME, 1).expect("serial"),
        ),
    };
    let return_date = NaiveDate::from_ymd_opt(2026, 12, 24).expect("date");
    vec![
        cabinet.activation(TIME).expect("activation"),
        cabinet.heartbeat(TIME).expect("heartbeat"),
        cabinet
            .deposit(&record, &drawer, DepositKind::New, TIME)
            .expect("deposit"),
        cabinet
            .deposit(&record, &drawer, DepositKind::Return, TIME)
            .expect("return"),
        cabinet
            .lend(&record, &drawer, return_date, &trip, TIME)
            .expect("lend"),
        cabinet
            .take_out(&record, &drawer, None, &Trip::default(), TIME)
            .expect("take out"),
        cabinet
            .abnormal_withdrawal(&record, &drawer, AbnormalReason::ChipUnreadable, TIME)
            .expect("abnormal withdrawal"),
        cabinet
            .cancellation(
                &document_id(&record).expect("zjbs"),
                CancellationReason::Expired,
                TIME,
            )
            .expect("cancellation"),
        cabinet
            .alarm("温度", "环境温度过高，超过阈值上限(30°C)", TIME)
            .expect("alarm"),
    ]
}

// ---------------------------------------------------------------------------------------------
// Signatures

#[test]
fn every_signature_verifies_in_openssl() {
    require_openssl!();
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let dir = TempDir::new();
    let public_key = dir.file("cabinet.pub.pem", cabinet.public_key_pem().as_bytes());
    for (index, request) in every_request(&cabinet).iter().enumerate() {
        let message = dir.file(&format!("signed-{index}.bin"), &request.signed_bytes());
        let signature = BASE64.decode(&request.s.sig).expect("sig is base64");
        let signature = dir.file(&format!("sig-{index}.der"), &signature);
        let verify = |message: &Path| {
            openssl(&[
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                path_str(&public_key),
                "-rawin",
                "-digest",
                "sm3",
                "-pkeyopt",
                DISTID,
                "-sigfile",
                path_str(&signature),
                "-in",
                path_str(message),
            ])
        };
        let (ok, stdout, stderr) = verify(&message);
        assert!(
            ok,
            "openssl refused the {} signature: {}{stderr}",
            request.mstype,
            String::from_utf8_lossy(&stdout)
        );
        // Not vacuous: one changed byte (here: the reqid) fails in OpenSSL too.
        let mut tampered = request.clone();
        tampered.c.reqid = "0".repeat(32);
        let tampered = dir.file(&format!("tampered-{index}.bin"), &tampered.signed_bytes());
        assert!(
            !verify(&tampered).0,
            "{} tampered still verifies",
            request.mstype
        );
    }
}

#[test]
fn every_signature_verifies_with_the_enrolled_public_key() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    // What the platform does: read the enrolled PEM, verify `sig` over the signed bytes.
    let public_key = keys::public_key_from_spki_pem(&cabinet.enrollment().public_key_pem)
        .expect("enrolled PEM parses");
    let verifier = Sm2Verifier::new(&public_key);
    for request in every_request(&cabinet) {
        request
            .verify_sender(&verifier)
            .expect("signature verifies");
        assert_eq!(request.version, "1");
        assert_eq!(request.c.coding, "b64");
        assert_eq!(request.c.ai, "SM2");
        assert_eq!(request.c.ei, cabinet.device_serial());
        assert_eq!(request.c.time, TIME.to_string());
        assert!(request.s.rsig.is_empty());
        // What travels is what was signed.
        let parsed = SignedRequest::from_json(request.to_json().expect("JSON").as_bytes())
            .expect("round trip");
        assert_eq!(parsed, request);
    }
}

#[test]
fn fixture_request_is_reproduced_byte_for_byte_with_the_fixture_key() {
    let (Some(request_json), Some(key_pem), Some(certificate_pem), Some(public_pem)) = (
        fixture_text("request-1.json"),
        fixture_text("cabinet-XJH-Q2555061.key.pem"),
        fixture_text("platform-enc.cert.pem"),
        fixture_text("cabinet-XJH-Q2555061.pub.pem"),
    ) else {
        eprintln!(
            "skipping: shared fixtures not found at {:?}",
            fixtures_dir()
        );
        return;
    };
    let fixture = SignedRequest::from_json(request_json.as_bytes()).expect("fixture parses");
    let secret_key = keys::secret_key_from_pkcs8_pem(&key_pem).expect("fixture key");
    let spec = CabinetSpec {
        device_serial: "XJH-Q2555061".into(),
        unit_credit_code: "914403001922038216".into(),
        unit_name: "测试单位".into(),
        model: "XJH".into(),
        bodies: vec![CabinetBody {
            serial: "XJH-Q2555061-G1".into(),
            rows: 4,
            columns: 6,
        }],
    };
    let cabinet = SimulatedCabinet::with_secret_key(spec, &secret_key, &certificate_pem)
        .expect("cabinet with the fixture key");
    assert_eq!(cabinet.public_key_pem().trim(), public_pem.trim());
    let again = cabinet
        .sign_again(&fixture, TIME, Some(&fixture.c.reqid))
        .expect("sign the fixture's data again");
    assert_eq!(again.bdata, fixture.bdata);
    assert_eq!(again.signed_bytes(), fixture.signed_bytes());
    if let Ok(signed_bytes) = std::fs::read(fixtures_dir().join("request-1.signed-bytes.bin")) {
        assert_eq!(again.signed_bytes(), signed_bytes);
    }
    let verifier = Sm2Verifier::new(&secret_key.public_key());
    again
        .verify_sender(&verifier)
        .expect("our signature verifies");
    fixture
        .verify_sender(&verifier)
        .expect("OpenSSL's signature verifies");
}

#[test]
fn reqids_are_fresh_unless_chosen() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let first = cabinet.activation(TIME).expect("activation");
    let second = cabinet.activation(TIME).expect("activation");
    assert_ne!(first.c.reqid, second.c.reqid);
    for request in [&first, &second] {
        assert_eq!(request.c.reqid.len(), 32);
        assert!(request
            .c
            .reqid
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    let chosen = cabinet
        .sign_with_reqid(
            message_type::ACTIVATION,
            &cabinet.activation_data(),
            TIME,
            "00112233445566778899aabbccddeeff",
        )
        .expect("signed");
    assert_eq!(chosen.c.reqid, "00112233445566778899aabbccddeeff");
    // Signing again keeps the business data (same ywlsh: a duplicate, not a new operation).
    let deposit = cabinet
        .deposit(
            &random_document_record(&mut rand::rng()),
            &cabinet.drawer(0),
            DepositKind::New,
            TIME,
        )
        .expect("deposit");
    let retry = cabinet
        .sign_again(&deposit, TIME + 5_000, None)
        .expect("signed again");
    assert_eq!(retry.bdata, deposit.bdata);
    assert_ne!(retry.c.reqid, deposit.c.reqid);
    assert_eq!(retry.c.time, (TIME + 5_000).to_string());
    assert_eq!(business_serial_of(&retry), business_serial_of(&deposit));
}

// ---------------------------------------------------------------------------------------------
// Envelopes

#[test]
fn zjdata_opens_with_the_platform_key_and_parses_to_the_same_record() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let opener = EnvelopeOpener::with_certificate(&platform.secret_key, &platform.certificate)
        .expect("opener");
    for _ in 0..5 {
        let record = random_document_record(&mut rand::rng());
        let drawer = cabinet.drawer(1);
        let requests = [
            cabinet.deposit(&record, &drawer, DepositKind::New, TIME),
            cabinet.lend(
                &record,
                &drawer,
                NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
                &Trip::default(),
                TIME,
            ),
            cabinet.abnormal_withdrawal(&record, &drawer, AbnormalReason::Invalid, TIME),
        ];
        for request in requests {
            let request = request.expect("signed");
            let data: CustodyReportData = request.business_data().expect("custody data");
            let der = BASE64
                .decode(&data.sealed_record)
                .expect("zjdata is base64");
            let plaintext = envelope::open(&der, &platform.secret_key).expect("opens");
            assert_eq!(DocumentRecord::parse(&plaintext).expect("record"), record);
            assert_eq!(
                opener.open_base64(&data.sealed_record).expect("opens"),
                plaintext
            );
        }
    }
}

#[test]
fn zjdata_is_refused_by_another_platform_key() {
    let platform = platform_key();
    let other = platform_key();
    let cabinet = cabinet_for(&platform);
    let sealed = cabinet
        .seal_record(&random_document_record(&mut rand::rng()))
        .expect("sealed");
    let der = BASE64.decode(sealed).expect("base64");
    assert!(envelope::open(&der, &other.secret_key).is_err());
}

#[test]
fn envelope_content_key_decrypts_in_openssl() {
    require_openssl!();
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let record = random_document_record(&mut rand::rng());
    let sealed = cabinet.seal_record(&record).expect("sealed");
    let der = BASE64.decode(sealed).expect("base64");
    let parsed = envelope::parse(&der).expect("envelope structure");
    assert_eq!(parsed.recipients.len(), 1);
    assert_eq!(
        parsed.recipients[0].issuer_der,
        platform.certificate.issuer_der()
    );
    let encrypted_key = &parsed.recipients[0].encrypted_key;

    let dir = TempDir::new();
    let key_pem = dir.file("platform.key.pem", platform.secret_key_pem.as_bytes());
    let encrypted_key_path = dir.file("key.sm2", encrypted_key);
    let (ok, content_key, stderr) = openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        path_str(&key_pem),
        "-in",
        path_str(&encrypted_key_path),
    ]);
    assert!(ok, "openssl could not decrypt the content key: {stderr}");
    assert_eq!(content_key.len(), 16);
    assert_eq!(
        content_key,
        sm2enc::decrypt_der(&platform.secret_key, encrypted_key).expect("Rust decrypts")
    );

    // With that key OpenSSL's own SM4-CBC recovers the 137-byte record.
    let iv_der = parsed
        .content_encryption_parameters_der
        .expect("SM4-CBC has an IV");
    assert_eq!(&iv_der[..2], &[0x04, 0x10]);
    let content = dir.file(
        "content.bin",
        &parsed.encrypted_content.expect("encrypted content"),
    );
    let (ok, plaintext, stderr) = openssl(&[
        "enc",
        "-d",
        "-sm4-cbc",
        "-K",
        &hex(&content_key),
        "-iv",
        &hex(&iv_der[2..]),
        "-in",
        path_str(&content),
    ]);
    assert!(ok, "openssl could not decrypt the content: {stderr}");
    assert_eq!(plaintext, record.to_bytes().expect("record bytes"));
}

// ---------------------------------------------------------------------------------------------
// Wire shapes

/// The JSON type of every field: `s` string, `i` integer, `a` array.
fn field_types(value: &Value) -> Vec<(String, char)> {
    let Value::Object(map) = value else {
        panic!("not an object: {value}");
    };
    map.iter()
        .map(|(key, value)| {
            let kind = match value {
                Value::String(_) => 's',
                Value::Number(n) if n.is_u64() => 'i',
                Value::Array(_) => 'a',
                other => panic!("{key} has unexpected JSON {other}"),
            };
            (key.clone(), kind)
        })
        .collect()
}

#[test]
fn custody_report_has_the_fixture_shape() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let deposit = cabinet
        .deposit(
            &random_document_record(&mut rand::rng()),
            &cabinet.drawer(0),
            DepositKind::New,
            TIME,
        )
        .expect("deposit");
    let ours = business_data(&deposit);
    let mut expected: Vec<(String, char)> = [
        "ywlsh",
        "sbttime",
        "zjdata",
        "optype",
        "optime",
        "retdate",
        "qzyt",
        "mdd",
        "cgspywlsh",
        "ycyy",
        "Deviceid",
        "ZZGSN",
    ]
    .iter()
    .map(|key| (key.to_string(), 's'))
    .collect();
    expected.push(("Row".into(), 'i'));
    expected.push(("Column".into(), 'i'));
    let mut actual = field_types(&ours);
    let mut sorted_expected = expected.clone();
    actual.sort();
    sorted_expected.sort();
    assert_eq!(actual, sorted_expected);

    if let Some(fixture) = fixture_text("request-1.json") {
        let fixture = SignedRequest::from_json(fixture.as_bytes()).expect("fixture parses");
        let theirs = business_data(&fixture);
        let mut fixture_types = field_types(&theirs);
        fixture_types.sort();
        assert_eq!(
            actual, fixture_types,
            "same fields and JSON types as request-1"
        );
        // Same field order as the fixture too (serde keeps declaration order; serde_json's map
        // is sorted, so compare the raw text's key order).
        let order = |request: &SignedRequest| -> Vec<usize> {
            let text =
                String::from_utf8(request.business_data_bytes().expect("bdata")).expect("UTF-8");
            expected
                .iter()
                .map(|(key, _)| text.find(&format!("\"{key}\":")).expect("key present"))
                .collect()
        };
        let ours_order = order(&deposit);
        let fixture_order = order(&fixture);
        let rank = |positions: &[usize]| {
            let mut indices: Vec<usize> = (0..positions.len()).collect();
            indices.sort_by_key(|&i| positions[i]);
            indices
        };
        assert_eq!(rank(&ours_order), rank(&fixture_order));
    }

    let data: CustodyReportData = deposit.business_data().expect("typed");
    assert_eq!(data.operation, "11");
    assert_eq!(data.report_time, "20261123103005");
    assert_eq!(data.operation_time, "20261123103005");
    assert_eq!(data.device_serial, cabinet.device_serial());
    assert_eq!(data.cabinet_body, cabinet.bodies()[0].serial);
    assert_eq!((data.row, data.column), (1, 1));
    for empty in [
        &data.return_date,
        &data.purpose,
        &data.destination,
        &data.travel_approval_serial,
        &data.abnormal_reason,
    ] {
        assert_eq!(empty, "");
    }
}

#[test]
fn every_report_carries_its_fields_and_a_valid_serial() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let requests = every_request(&cabinet);
    let expected_mstypes = [
        message_type::ACTIVATION,
        message_type::HEARTBEAT,
        message_type::CUSTODY,
        message_type::CUSTODY,
        message_type::CUSTODY,
        message_type::CUSTODY,
        message_type::CUSTODY,
        message_type::CANCELLATION,
        message_type::ALARM,
    ];
    let mstypes: Vec<&str> = requests.iter().map(|r| r.mstype.as_str()).collect();
    assert_eq!(mstypes, expected_mstypes);

    let activation: ActivationData = requests[0].business_data().expect("activation");
    assert_eq!(activation.device_serial, cabinet.device_serial());
    activation
        .unit_credit_code
        .parse::<CreditCode>()
        .expect("credit code");
    assert!(!activation.administrators.is_empty());
    for administrator in &activation.administrators {
        assert_eq!(administrator.person_id.len(), 64);
        administrator
            .person_id
            .parse::<custody_domain::identifiers::PersonId>()
            .expect("rybs");
    }
    assert_eq!(
        field_types(&business_data(&requests[0]))
            .iter()
            .filter(|(_, kind)| *kind != 's')
            .map(|(key, _)| key.as_str())
            .collect::<Vec<_>>(),
        ["glylb"]
    );

    let heartbeat: HeartbeatData = requests[1].business_data().expect("heartbeat");
    assert_eq!(heartbeat.reported_at, "20261123103005");
    assert!(field_types(&business_data(&requests[1]))
        .iter()
        .all(|(_, kind)| *kind == 's'));

    let optypes: Vec<String> = requests[2..7]
        .iter()
        .map(|r| {
            r.business_data::<CustodyReportData>()
                .expect("custody")
                .operation
        })
        .collect();
    assert_eq!(optypes, ["11", "12", "21", "22", "23"]);
    let lend: CustodyReportData = requests[4].business_data().expect("lend");
    assert_eq!(lend.return_date, "20261224");
    assert_eq!(lend.purpose, "探亲");
    assert_eq!(lend.destination, "HKG");
    assert!(lend.travel_approval_serial.starts_with("SP"));
    let abnormal: CustodyReportData = requests[6].business_data().expect("abnormal");
    assert_eq!(abnormal.abnormal_reason, "chip_unreadable");
    assert_eq!(abnormal.return_date, "");

    let cancellation: CancellationData = requests[7].business_data().expect("cancellation");
    assert_eq!(cancellation.reason, "expired");
    assert_eq!(cancellation.operation_time, "20261123103005");
    cancellation
        .document_id
        .parse::<custody_domain::identifiers::DocumentId>()
        .expect("zjbs");
    let alarm: AlarmData = requests[8].business_data().expect("alarm");
    assert_eq!(alarm.device_serial, cabinet.device_serial());
    assert_eq!(alarm.raised_at, "20261123103005");

    // Business serials: valid, of the right kind, distinct, with this terminal's sequence.
    let expected_kinds = [
        (2, SerialKind::Deposit),
        (3, SerialKind::Deposit),
        (4, SerialKind::Withdrawal),
        (5, SerialKind::Withdrawal),
        (6, SerialKind::Withdrawal),
        (7, SerialKind::Cancellation),
        (8, SerialKind::Inventory),
    ];
    let mut serials = HashSet::new();
    for (index, kind) in expected_kinds {
        let serial = business_serial_of(&requests[index]).expect("ywlsh");
        let parsed: BusinessSerial = serial.parse().expect("valid YWLSH");
        assert_eq!(parsed.kind(), kind, "{serial}");
        assert_eq!(
            parsed.timestamp(),
            NaiveDate::from_ymd_opt(2026, 11, 23)
                .and_then(|d| d.and_hms_opt(10, 30, 5))
                .expect("time")
        );
        assert!(serials.insert(serial));
    }
}

#[test]
fn cancellation_names_the_document_and_its_proof_signature_verifies() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let record = DocumentRecord {
        document_type: "414".into(),
        document_number: "E12345678".into(),
        ..random_document_record(&mut rand::rng())
    };
    let zjbs = document_id(&record).expect("zjbs");
    assert_eq!(
        zjbs,
        custody_domain::identifiers::sm3_hex("414.E12345678".as_bytes())
    );
    let data = cabinet
        .cancellation_data(&zjbs, CancellationReason::LeftUnit, TIME)
        .expect("data");
    assert_eq!(data.document_id, zjbs);
    assert_eq!(data.reason, "left_unit");
    let signature = BASE64.decode(&data.proof_signature).expect("base64");
    let proof = format!("cancellation proof\n{zjbs}\nleft_unit\n20261123103005");
    cabinet
        .signer()
        .verifier()
        .verify(proof.as_bytes(), &signature)
        .expect("proof signature verifies");
}

#[test]
fn enrollment_body_has_the_ops_api_shape() {
    let platform = platform_key();
    let cabinet = cabinet_for(&platform);
    let body = serde_json::to_value(cabinet.enrollment()).expect("JSON");
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["cabinets", "model", "public_key_pem", "sbxlh", "tyshxydm"]
    );
    assert_eq!(body["sbxlh"], cabinet.device_serial());
    assert_eq!(body["tyshxydm"], cabinet.unit_credit_code());
    let body_serial = format!("{}-G1", cabinet.device_serial());
    assert_eq!(
        body["cabinets"],
        serde_json::json!([{ "zjgxlh": body_serial, "rows": 4, "cols": 6 }])
    );
    let public_key = keys::public_key_from_spki_pem(body["public_key_pem"].as_str().expect("PEM"))
        .expect("SPKI PEM");
    assert_eq!(public_key, cabinet.signer().public_key());
}

#[test]
fn drawers_cover_every_body_row_by_row_and_wrap() {
    let platform = platform_key();
    let spec = CabinetSpec {
        device_serial: "SIM-1".into(),
        unit_credit_code: random_credit_code(&mut rand::rng()),
        unit_name: "测试单位".into(),
        model: "M".into(),
        bodies: vec![
            CabinetBody {
                serial: "A".into(),
                rows: 2,
                columns: 3,
            },
            CabinetBody {
                serial: "B".into(),
                rows: 1,
                columns: 2,
            },
        ],
    };
    let cabinet = SimulatedCabinet::new(spec, &platform.certificate_pem).expect("cabinet");
    assert_eq!(cabinet.drawer_count(), 8);
    let drawers: Vec<(String, u16, u16)> = (0..8)
        .map(|i| {
            let d = cabinet.drawer(i);
            (d.body, d.row, d.column)
        })
        .collect();
    let expected: Vec<(String, u16, u16)> = [
        ("A", 1, 1),
        ("A", 1, 2),
        ("A", 1, 3),
        ("A", 2, 1),
        ("A", 2, 2),
        ("A", 2, 3),
        ("B", 1, 1),
        ("B", 1, 2),
    ]
    .iter()
    .map(|(b, r, c)| (b.to_string(), *r, *c))
    .collect();
    assert_eq!(drawers, expected);
    assert_eq!(cabinet.drawer(8), cabinet.drawer(0));
}

#[test]
fn unusable_inputs_are_refused_with_typed_errors() {
    let platform = platform_key();
    let mut spec = CabinetSpec::random(&mut rand::rng(), "914403001922038216", "单位");
    spec.bodies[0].rows = 0;
    assert!(matches!(
        SimulatedCabinet::new(spec.clone(), &platform.certificate_pem),
        Err(SimulateError::Options(_))
    ));
    spec.bodies[0].rows = 2;
    assert!(matches!(
        SimulatedCabinet::new(spec.clone(), "not a certificate"),
        Err(SimulateError::PlatformCertificate(_))
    ));
    // A public key is not a certificate.
    assert!(matches!(
        SimulatedCabinet::new(spec, &platform.public_key_pem),
        Err(SimulateError::PlatformCertificate(_))
    ));
    let cabinet = cabinet_for(&platform);
    let bad_record = DocumentRecord::default();
    assert!(matches!(
        cabinet.deposit(&bad_record, &cabinet.drawer(0), DepositKind::New, TIME),
        Err(SimulateError::Record(_))
    ));
    assert!(matches!(
        cabinet.heartbeat(i64::MAX),
        Err(SimulateError::TimeOutOfRange(_))
    ));
}

#[test]
fn latency_summary_uses_nearest_rank() {
    let mut latencies: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
    let summary = LatencySummary::of(&mut latencies).expect("summary");
    assert_eq!(summary.p50, Duration::from_millis(50));
    assert_eq!(summary.p95, Duration::from_millis(95));
    assert_eq!(summary.p99, Duration::from_millis(99));
    assert_eq!(summary.max, Duration::from_millis(100));
    assert_eq!(summary.mean, Duration::from_micros(50_500));
    let mut one = vec![Duration::from_millis(7)];
    let summary = LatencySummary::of(&mut one).expect("summary");
    assert_eq!((summary.p50, summary.p99), (one[0], one[0]));
    assert!(LatencySummary::of(&mut []).is_none());
}

#[test]
fn load_config_is_validated() {
    let good = LoadConfig {
        cabinets: 1,
        duration: Duration::from_secs(10),
        concurrency: 1,
        max_requests: 1,
        rate: None,
    };
    assert!(good.validate().is_ok());
    for bad in [
        LoadConfig {
            cabinets: 0,
            ..good.clone()
        },
        LoadConfig {
            concurrency: 0,
            ..good.clone()
        },
        LoadConfig {
            max_requests: 0,
            ..good.clone()
        },
        LoadConfig {
            duration: Duration::from_secs(241),
            ..good.clone()
        },
        LoadConfig {
            rate: Some(0),
            ..good.clone()
        },
    ] {
        assert!(matches!(bad.validate(), Err(SimulateError::Options(_))));
    }
}

#[test]
fn base_urls_are_normalised_and_checked() {
    use super::http::{normalise_base_url, report_url};
    assert_eq!(
        normalise_base_url("http://127.0.0.1:8080/").expect("ok"),
        "http://127.0.0.1:8080"
    );
    assert!(normalise_base_url("127.0.0.1:8080").is_err());
    assert_eq!(
        report_url("http://127.0.0.1:8080/", "sjsb-zjcq"),
        "http://127.0.0.1:8080/yth_g1xt/api/v1/sjsb-zjcq"
    );
}

// ---------------------------------------------------------------------------------------------
// Against a fake service on loopback

/// Just enough of the service to check what the simulator sends: ops calls with the operator
/// token, signatures against the enrolled keys, replayed reqids, envelopes that open to valid
/// records.
struct FakeService {
    token: String,
    platform: GeneratedKeyPair,
    orgs: Mutex<HashSet<String>>,
    devices: Mutex<HashMap<String, Sm2Verifier>>,
    reqids: Mutex<HashSet<String>>,
    accepted: Mutex<HashMap<String, usize>>,
    documents: Mutex<HashSet<String>>,
}

type Reply = (axum::http::StatusCode, axum::Json<Value>);

fn refusal(status: u16, code: &str, message: &str) -> Reply {
    (
        axum::http::StatusCode::from_u16(status).expect("status"),
        axum::Json(serde_json::json!({
            "ywlsh": "", "status": false, "error_code": code, "error_msg": message,
            "duplicate": false
        })),
    )
}

impl FakeService {
    fn authorised(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            == Some(format!("Bearer {}", self.token).as_str())
    }

    fn report(&self, mstype: &str, body: &[u8]) -> Reply {
        let Ok(request) = SignedRequest::from_json(body) else {
            return refusal(400, "E_MALFORMED", "not a request");
        };
        if request.mstype != mstype {
            return refusal(400, "E_MALFORMED", "mstype differs from the path");
        }
        let verifier = match self.devices.lock().expect("lock").get(&request.c.ei) {
            Some(verifier) => verifier.clone(),
            None => return refusal(401, "E_DEVICE_UNKNOWN", "unknown ei"),
        };
        if request.verify_sender(&verifier).is_err() {
            return refusal(401, "E_SIGNATURE", "sig does not verify");
        }
        if !self
            .reqids
            .lock()
            .expect("lock")
            .insert(request.c.reqid.clone())
        {
            return refusal(409, "E_REPLAY", "reqid seen before");
        }
        let mut ywlsh = String::new();
        if mstype == message_type::CUSTODY {
            let Ok(data) = request.business_data::<CustodyReportData>() else {
                return refusal(400, "E_MALFORMED", "bdata");
            };
            if data.business_serial.parse::<BusinessSerial>().is_err() {
                return refusal(400, "E_MALFORMED", "ywlsh");
            }
            let opener = EnvelopeOpener::new(&self.platform.secret_key);
            let Ok(plaintext) = opener.open_base64(&data.sealed_record) else {
                return refusal(400, "E_ENVELOPE", "zjdata does not open");
            };
            let Ok(record) = DocumentRecord::parse(&plaintext) else {
                return refusal(400, "E_MALFORMED", "record");
            };
            let Ok(zjbs) = document_id(&record) else {
                return refusal(422, "E_VALIDATION", "record identifiers");
            };
            if data.operation == "11" && !self.documents.lock().expect("lock").insert(zjbs) {
                return refusal(409, "E_ILLEGAL_TRANSITION", "already deposited");
            }
            ywlsh = data.business_serial;
        }
        *self
            .accepted
            .lock()
            .expect("lock")
            .entry(mstype.to_owned())
            .or_insert(0) += 1;
        (
            axum::http::StatusCode::OK,
            axum::Json(serde_json::json!({
                "ywlsh": ywlsh, "status": true, "error_code": "0", "error_msg": "",
                "duplicate": false
            })),
        )
    }
}

async fn spawn_fake_service(token: &str) -> (String, Arc<FakeService>) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post as route_post};

    let service = Arc::new(FakeService {
        token: token.to_owned(),
        platform: platform_key(),
        orgs: Mutex::default(),
        devices: Mutex::default(),
        reqids: Mutex::default(),
        accepted: Mutex::default(),
        documents: Mutex::default(),
    });
    let router = axum::Router::new()
        .route(
            "/api/v1/ops/platform-key",
            get(
                |State(service): State<Arc<FakeService>>, headers: HeaderMap| async move {
                    if !service.authorised(&headers) {
                        return (StatusCode::UNAUTHORIZED, axum::Json(Value::Null));
                    }
                    (
                        StatusCode::OK,
                        axum::Json(serde_json::json!({
                            "public_key_pem": service.platform.public_key_pem,
                            "certificate_pem": service.platform.certificate_pem,
                        })),
                    )
                },
            ),
        )
        .route(
            "/api/v1/ops/orgs",
            route_post(
                |State(service): State<Arc<FakeService>>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<Value>| async move {
                    if !service.authorised(&headers) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    let code = body["code"].as_str().unwrap_or_default();
                    if code.parse::<CreditCode>().is_err()
                        || !body["parent"].is_null()
                        || !body["name"].is_string()
                    {
                        return StatusCode::UNPROCESSABLE_ENTITY;
                    }
                    service.orgs.lock().expect("lock").insert(code.to_owned());
                    StatusCode::CREATED
                },
            ),
        )
        .route(
            "/api/v1/ops/devices",
            route_post(
                |State(service): State<Arc<FakeService>>,
                 headers: HeaderMap,
                 axum::Json(body): axum::Json<DeviceEnrollment>| async move {
                    if !service.authorised(&headers) {
                        return StatusCode::UNAUTHORIZED;
                    }
                    if !service
                        .orgs
                        .lock()
                        .expect("lock")
                        .contains(&body.unit_credit_code)
                    {
                        return StatusCode::UNPROCESSABLE_ENTITY;
                    }
                    let Ok(public_key) = keys::public_key_from_spki_pem(&body.public_key_pem)
                    else {
                        return StatusCode::BAD_REQUEST;
                    };
                    service
                        .devices
                        .lock()
                        .expect("lock")
                        .insert(body.device_serial, Sm2Verifier::new(&public_key));
                    StatusCode::CREATED
                },
            ),
        )
        .route(
            "/yth_g1xt/api/v1/{mstype}",
            route_post(
                |State(service): State<Arc<FakeService>>,
                 UrlPath(mstype): UrlPath<String>,
                 body: axum::body::Bytes| async move { service.report(&mstype, &body) },
            ),
        )
        .with_state(Arc::clone(&service));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{address}"), service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_and_reports_are_accepted_by_a_fake_service() {
    let (base_url, service) = spawn_fake_service("operator-secret").await;
    let client = http_client(Duration::from_secs(10), 4).expect("client");
    let ops = OpsClient::new(client.clone(), &base_url, "operator-secret").expect("ops");
    let fleet = provision_fleet(&ops, 3, super::generate::now_millis())
        .await
        .expect("provisioned");
    assert_eq!(fleet.cabinets.len(), 3);
    assert_eq!(service.devices.lock().expect("lock").len(), 3);
    assert_eq!(
        service
            .accepted
            .lock()
            .expect("lock")
            .get(message_type::ACTIVATION),
        Some(&3)
    );

    let cabinet = &fleet.cabinets[0];
    let deposit = cabinet
        .deposit(
            &random_document_record(&mut rand::rng()),
            &cabinet.drawer(0),
            DepositKind::New,
            TIME,
        )
        .expect("deposit");
    let (status, body) = post(&client, &base_url, &deposit).await.expect("posted");
    assert_eq!(status, 200, "{body}");
    let reply = ServiceReply::from_body(&body).expect("reply");
    assert!(reply.status);
    assert_eq!(Some(reply.ywlsh), business_serial_of(&deposit));
    // The same request again is a replay.
    let (status, body) = post(&client, &base_url, &deposit).await.expect("posted");
    assert_eq!(status, 409);
    assert_eq!(
        ServiceReply::from_body(&body).expect("reply").error_code,
        "E_REPLAY"
    );

    // A wrong operator token is a typed refusal naming the call.
    let intruder = OpsClient::new(client, &base_url, "wrong").expect("ops");
    match provision_fleet(&intruder, 1, TIME).await {
        Err(SimulateError::Refused { status, call, .. }) => {
            assert_eq!(status, 401);
            assert!(call.contains("/api/v1/ops/platform-key"), "{call}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_run_sends_every_prepared_deposit_once() {
    let (base_url, service) = spawn_fake_service("operator-secret").await;
    let client = http_client(Duration::from_secs(10), 4).expect("client");
    let ops = OpsClient::new(client, &base_url, "operator-secret").expect("ops");
    let config = LoadConfig {
        cabinets: 2,
        duration: Duration::from_secs(60),
        concurrency: 4,
        max_requests: 40,
        rate: None,
    };
    let report = run_load(&ops, &config).await.expect("load run");
    let summary = &report.summary;
    assert_eq!(summary.stopped_by, StopReason::ReportsExhausted);
    assert_eq!(summary.sent, 40);
    assert_eq!(summary.answered, 40);
    assert_eq!(summary.accepted(), 40, "{report}");
    assert!(summary.failures.is_empty());
    assert!(summary.latency.is_some());
    assert!(summary.throughput() > 0.0);
    assert_eq!(report.preparation.count, 40);
    assert_eq!(
        service
            .accepted
            .lock()
            .expect("lock")
            .get(message_type::CUSTODY),
        Some(&40)
    );
    assert_eq!(service.documents.lock().expect("lock").len(), 40);
    let text = report.to_string();
    for needle in ["throughput", "p50", "p95", "p99", "max", "200  0"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

/// The open loop keeps its schedule: 30 reports at 20 a second cannot all have been sent before
/// the last one's due time (1.45 s), however fast the service answers, and all are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_sends_each_report_when_it_is_due() {
    let (base_url, service) = spawn_fake_service("operator-secret").await;
    let client = http_client(Duration::from_secs(10), 8).expect("client");
    let ops = OpsClient::new(client, &base_url, "operator-secret").expect("ops");
    let config = LoadConfig {
        cabinets: 2,
        duration: Duration::from_secs(60),
        concurrency: 8,
        max_requests: 30,
        rate: Some(20),
    };
    let report = run_load(&ops, &config).await.expect("load run");
    let summary = &report.summary;
    assert_eq!(summary.accepted(), 30, "{report}");
    assert!(
        summary.elapsed >= Duration::from_millis(1_450),
        "{:?}",
        summary.elapsed
    );
    assert_eq!(service.documents.lock().expect("lock").len(), 30);
    assert!(report.to_string().contains("open loop at 20 reports/s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_run_stops_at_the_deadline() {
    let (base_url, _service) = spawn_fake_service("operator-secret").await;
    let client = http_client(Duration::from_secs(10), 2).expect("client");
    let ops = OpsClient::new(client, &base_url, "operator-secret").expect("ops");
    let fleet = provision_fleet(&ops, 1, super::generate::now_millis())
        .await
        .expect("provisioned");
    let (reports, _) =
        super::load::prepare_deposits(&fleet.cabinets, &base_url, 30).expect("prepared");
    // A deadline already passed: nothing is sent.
    let summary = super::load::send_prepared(
        ops.client(),
        reports,
        2,
        None,
        std::time::Instant::now(),
        false,
    )
    .await;
    assert_eq!(summary.sent, 0);
    assert_eq!(summary.stopped_by, StopReason::DurationReached);
    assert!(summary.latency.is_none());
}
