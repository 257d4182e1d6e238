//! The shared fixtures: GmSSL envelopes, records, the signed request, keys and certificates.

mod common;

use common::*;
use custody_protocol::envelope::{self, EnvelopeError, EnvelopeOpener};
use custody_protocol::keys;
use custody_protocol::request::RequestError;
use custody_protocol::sm2sig::{SignatureError, Sm2Verifier};
use custody_protocol::{DocumentRecord, SignedRequest};

#[test]
fn envelope_1_der_opens_to_record_1() {
    let plaintext =
        envelope::open(&fixture_bytes("envelope-1.der"), &platform_secret_key()).unwrap();
    assert_eq!(plaintext, fixture_bytes("record-1.bin"));
}

#[test]
fn envelope_pems_open_with_certificate_check() {
    let opener =
        EnvelopeOpener::with_certificate(&platform_secret_key(), &platform_certificate()).unwrap();
    for (envelope_file, record_file) in [
        ("envelope-1.pem", "record-1.bin"),
        ("envelope-2.pem", "record-2.bin"),
    ] {
        let der = envelope::der_from_pem(&fixture_text(envelope_file)).unwrap();
        assert_eq!(
            opener.open(&der).unwrap(),
            fixture_bytes(record_file),
            "{envelope_file}"
        );
    }
    assert_eq!(
        envelope::der_from_pem(&fixture_text("envelope-1.pem")).unwrap(),
        fixture_bytes("envelope-1.der")
    );
}

#[test]
fn gmssl_envelope_structure_is_as_documented() {
    let parsed = envelope::parse(&fixture_bytes("envelope-1.der")).unwrap();
    assert_eq!(parsed.recipients.len(), 1);
    let recipient = &parsed.recipients[0];
    assert_eq!(
        recipient.key_encryption_algorithm,
        custody_protocol::oid::SM2_ENCRYPTION_GMSSL
    );
    let certificate = platform_certificate();
    assert_eq!(recipient.issuer_der, certificate.issuer_der());
    assert_eq!(recipient.serial_number_der, certificate.serial_number_der());
    assert_eq!(
        parsed.content_encryption_algorithm,
        custody_protocol::oid::SM4_CBC
    );
    assert_eq!(parsed.encrypted_content.as_ref().map(Vec::len), Some(144));
}

#[test]
fn opener_refuses_certificate_of_another_key() {
    assert_eq!(
        EnvelopeOpener::with_certificate(
            &platform_secret_key(),
            &custody_protocol::Certificate::from_pem(&fixture_text(
                "cabinet-XJH-Q2555061.cert.pem"
            ))
            .unwrap()
        )
        .unwrap_err(),
        EnvelopeError::CertificateKeyMismatch
    );
}

#[test]
fn records_parse_to_readme_values() {
    assert_eq!(
        DocumentRecord::parse(&fixture_bytes("record-1.bin")).unwrap(),
        record_1()
    );
    assert_eq!(
        DocumentRecord::parse(&fixture_bytes("record-2.bin")).unwrap(),
        record_2()
    );
    assert_eq!(
        record_1().to_bytes().unwrap().to_vec(),
        fixture_bytes("record-1.bin")
    );
    assert_eq!(
        record_2().to_bytes().unwrap().to_vec(),
        fixture_bytes("record-2.bin")
    );
}

fn request_1() -> SignedRequest {
    SignedRequest::from_json(&fixture_bytes("request-1.json")).unwrap()
}

#[test]
fn request_1_parses_and_signed_bytes_match() {
    let request = request_1();
    assert_eq!(request.version, "1");
    assert_eq!(request.mstype, "sjsb-zjcq");
    assert_eq!(request.c.reqid, "5f0c6a7e9b1d4c3a8e2f7a6b5c4d3e2f");
    assert_eq!(request.c.ei, "XJH-Q2555061");
    assert_eq!(request.time_millis().unwrap(), 1_795_401_005_000);
    assert!(!request.has_gateway_signature());
    assert_eq!(
        request.signed_bytes(),
        fixture_bytes("request-1.signed-bytes.bin")
    );
}

#[test]
fn request_1_sig_verifies_with_cabinet_key() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    request_1().verify_sender(&verifier).unwrap();
}

#[test]
fn request_1_with_flipped_bdata_fails() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    let mut request = request_1();
    // Flip one character in the middle of bdata (still valid base64).
    let middle = request.bdata.len() / 2;
    let mut chars: Vec<char> = request.bdata.chars().collect();
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    request.bdata = chars.into_iter().collect();
    assert_eq!(
        request.verify_sender(&verifier),
        Err(RequestError::SignatureMismatch { field: "s.sig" })
    );
}

#[test]
fn request_1_sig_fails_with_another_key() {
    let verifier = Sm2Verifier::new(&platform_secret_key().public_key());
    assert_eq!(
        request_1().verify_sender(&verifier),
        Err(RequestError::SignatureMismatch { field: "s.sig" })
    );
}

#[test]
fn request_1_detached_signature_verifies() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    verifier
        .verify(
            &fixture_bytes("request-1.signed-bytes.bin"),
            &fixture_bytes("request-1.sig.der"),
        )
        .unwrap();
    let mut other = fixture_bytes("request-1.signed-bytes.bin");
    other.push(b'x');
    assert_eq!(
        verifier.verify(&other, &fixture_bytes("request-1.sig.der")),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn request_1_zjdata_is_envelope_1() {
    #[derive(serde::Deserialize)]
    struct Deposit {
        zjdata: String,
        optype: String,
    }
    let deposit: Deposit = request_1().business_data().unwrap();
    assert_eq!(deposit.optype, "11");
    let opener =
        EnvelopeOpener::with_certificate(&platform_secret_key(), &platform_certificate()).unwrap();
    let record = DocumentRecord::parse(&opener.open_base64(&deposit.zjdata).unwrap()).unwrap();
    assert_eq!(record, record_1());
}

#[test]
fn keys_and_certificates_agree() {
    let platform_public =
        keys::public_key_from_spki_pem(&fixture_text("platform-enc.pub.pem")).unwrap();
    assert_eq!(platform_secret_key().public_key(), platform_public);
    assert_eq!(*platform_certificate().public_key(), platform_public);

    let cabinet_certificate =
        custody_protocol::Certificate::from_pem(&fixture_text("cabinet-XJH-Q2555061.cert.pem"))
            .unwrap();
    assert_eq!(*cabinet_certificate.public_key(), cabinet_public_key());
    assert_eq!(cabinet_secret_key().public_key(), cabinet_public_key());
}

#[test]
fn keys_round_trip_through_pem() {
    let secret = platform_secret_key();
    let pem = keys::secret_key_to_pkcs8_pem(&secret).unwrap();
    assert_eq!(keys::secret_key_from_pkcs8_pem(&pem).unwrap(), secret);
    let public_pem = keys::public_key_to_spki_pem(&secret.public_key()).unwrap();
    assert_eq!(
        public_pem.trim(),
        fixture_text("platform-enc.pub.pem").trim()
    );
    let certificate = platform_certificate();
    assert_eq!(
        certificate.to_pem().unwrap().trim(),
        fixture_text("platform-enc.cert.pem").trim()
    );
}

#[test]
fn key_loading_errors_are_typed() {
    assert!(matches!(
        keys::secret_key_from_pkcs8_pem(&fixture_text("platform-enc.pub.pem")),
        Err(keys::KeyError::SecretKey(_))
    ));
    assert!(matches!(
        keys::public_key_from_spki_pem(&fixture_text("platform-enc.key.pem")),
        Err(keys::KeyError::PublicKey(_))
    ));
    assert!(matches!(
        custody_protocol::Certificate::from_pem(&fixture_text("platform-enc.pub.pem")),
        Err(keys::KeyError::CertificatePemLabel(_))
    ));
    assert!(matches!(
        custody_protocol::Certificate::from_pem("garbage"),
        Err(keys::KeyError::Certificate(_))
    ));
    assert!(matches!(
        custody_protocol::Certificate::from_der(&fixture_bytes("envelope-1.der")),
        Err(keys::KeyError::Certificate(_))
    ));
}
