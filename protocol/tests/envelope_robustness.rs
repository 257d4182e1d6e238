//! Seal/open round trips and refusals: another recipient, tampering, truncation, bad input.
//!
//! Note: GM/T 0010 has no MAC. The SM2 C3 hash protects the content key, and PKCS#7 padding
//! catches some changes to the last blocks, but a changed IV or middle ciphertext block yields
//! a different plaintext rather than an error. Integrity of `zjdata` comes from the request
//! signature over `bdata`; the tests below pin down exactly what the envelope itself refuses.

mod common;

use std::time::Duration;

use common::*;
use custody_protocol::envelope::{self, EnvelopeError, EnvelopeOpener};
use custody_protocol::keys;

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("part present in envelope")
}

fn platform_opener() -> EnvelopeOpener {
    EnvelopeOpener::with_certificate(&platform_secret_key(), &platform_certificate()).unwrap()
}

#[test]
fn seal_then_open_round_trip() {
    let mut rng = rand::rng();
    let opener = platform_opener();
    let any_recipient = EnvelopeOpener::new(&platform_secret_key());
    for plaintext in [
        fixture_bytes("record-1.bin"),
        fixture_bytes("record-2.bin"),
        Vec::new(),
        vec![0x10; 16],
        vec![0xAB; 1000],
    ] {
        let sealed = envelope::seal(&plaintext, &platform_certificate(), &mut rng).unwrap();
        assert_eq!(opener.open(&sealed).unwrap(), plaintext);
        assert_eq!(any_recipient.open(&sealed).unwrap(), plaintext);
        assert_eq!(
            envelope::open(&sealed, &platform_secret_key()).unwrap(),
            plaintext
        );
    }
}

#[test]
fn sealing_twice_gives_different_envelopes() {
    let mut rng = rand::rng();
    let record = fixture_bytes("record-1.bin");
    let first = envelope::seal(&record, &platform_certificate(), &mut rng).unwrap();
    let second = envelope::seal(&record, &platform_certificate(), &mut rng).unwrap();
    assert_ne!(first, second);
}

#[test]
fn open_base64_accepts_zjdata_form_and_refuses_bad_base64() {
    use base64::Engine;
    let der = fixture_bytes("envelope-1.der");
    let text = base64::engine::general_purpose::STANDARD.encode(&der);
    let opener = platform_opener();
    assert_eq!(
        opener.open_base64(&text).unwrap(),
        fixture_bytes("record-1.bin")
    );
    assert_eq!(
        opener.open_base64("not base64!"),
        Err(EnvelopeError::BadBase64)
    );
}

#[test]
fn envelope_for_another_key_is_refused() {
    let mut rng = rand::rng();
    let other = keys::generate_platform_encryption_key(
        "CN=someone-else,O=Custody,C=CN",
        Duration::from_secs(86400),
        &mut rng,
    )
    .unwrap();
    let sealed =
        envelope::seal(&fixture_bytes("record-1.bin"), &other.certificate, &mut rng).unwrap();
    // With the platform certificate: refused before any decryption.
    assert_eq!(
        platform_opener().open(&sealed),
        Err(EnvelopeError::NotForThisRecipient)
    );
    // Without it: the SM2 C3 hash does not match.
    assert_eq!(
        envelope::open(&sealed, &platform_secret_key()),
        Err(EnvelopeError::KeyDecryptionFailed)
    );
    // The intended recipient opens it.
    assert_eq!(
        envelope::open(&sealed, &other.secret_key).unwrap(),
        fixture_bytes("record-1.bin")
    );
}

#[test]
fn every_flip_in_encrypted_key_is_refused() {
    let mut rng = rand::rng();
    let sealed = envelope::seal(
        &fixture_bytes("record-1.bin"),
        &platform_certificate(),
        &mut rng,
    )
    .unwrap();
    let parsed = envelope::parse(&sealed).unwrap();
    let encrypted_key = &parsed.recipients[0].encrypted_key;
    let start = find(&sealed, encrypted_key);
    let opener = platform_opener();
    for index in start..start + encrypted_key.len() {
        for mask in [0x01u8, 0x80] {
            let mut tampered = sealed.clone();
            tampered[index] ^= mask;
            let result = opener.open(&tampered);
            assert!(
                matches!(
                    result,
                    Err(EnvelopeError::KeyDecryptionFailed)
                        | Err(EnvelopeError::MalformedEncryptedKey(_))
                ),
                "flip {mask:#04x} at {index}: {result:?}"
            );
        }
    }
}

#[test]
fn flips_in_iv_and_ciphertext_never_return_the_original() {
    let mut rng = rand::rng();
    let record = fixture_bytes("record-1.bin");
    let sealed = envelope::seal(&record, &platform_certificate(), &mut rng).unwrap();
    let parsed = envelope::parse(&sealed).unwrap();
    let iv_der = parsed.content_encryption_parameters_der.unwrap();
    let iv_start = find(&sealed, &iv_der) + 2;
    let content = parsed.encrypted_content.unwrap();
    let content_start = find(&sealed, &content);
    let opener = platform_opener();
    let ranges = [
        iv_start..iv_start + 16,
        content_start..content_start + content.len(),
    ];
    for index in ranges.into_iter().flatten() {
        let mut tampered = sealed.clone();
        tampered[index] ^= 0x01;
        match opener.open(&tampered) {
            Ok(plaintext) => assert_ne!(plaintext, record, "flip at {index} went unnoticed"),
            Err(err) => assert_eq!(err, EnvelopeError::BadPadding, "flip at {index}"),
        }
    }
    // 137 bytes leave 7 padding bytes (0x07) at offsets 9..16 of the last block; flipping the
    // matching bytes of the previous ciphertext block always breaks the padding.
    let penultimate = content_start + content.len() - 32;
    for offset in 9..16 {
        let mut tampered = sealed.clone();
        tampered[penultimate + offset] ^= 0x01;
        assert_eq!(opener.open(&tampered), Err(EnvelopeError::BadPadding));
    }
}

#[test]
fn every_single_byte_flip_of_an_envelope_is_handled() {
    // Whatever byte changes, open returns (Ok or a typed error) without panicking.
    let der = fixture_bytes("envelope-1.der");
    let opener = platform_opener();
    let mut refused = 0;
    for index in 0..der.len() {
        let mut tampered = der.clone();
        tampered[index] ^= 0x20;
        if opener.open(&tampered).is_err() {
            refused += 1;
        }
    }
    // Everything outside the IV and the content's first blocks is refused.
    assert!(
        refused > der.len() / 2,
        "only {refused} of {} refused",
        der.len()
    );
}

#[test]
fn every_truncation_of_envelope_1_is_refused_without_panic() {
    let der = fixture_bytes("envelope-1.der");
    let opener = platform_opener();
    let any_recipient = EnvelopeOpener::new(&platform_secret_key());
    for length in 0..der.len() {
        assert!(
            opener.open(&der[..length]).is_err(),
            "prefix of {length} bytes"
        );
        assert!(
            any_recipient.open(&der[..length]).is_err(),
            "prefix of {length} bytes"
        );
        assert!(
            envelope::parse(&der[..length]).is_err(),
            "prefix of {length} bytes"
        );
    }
    let mut longer = der.clone();
    longer.push(0);
    assert!(matches!(
        opener.open(&longer),
        Err(EnvelopeError::Malformed(_))
    ));
}

#[test]
fn structural_refusals_are_typed() {
    let opener = platform_opener();
    assert!(matches!(opener.open(b""), Err(EnvelopeError::Malformed(_))));
    assert!(matches!(
        opener.open(b"hello"),
        Err(EnvelopeError::Malformed(_))
    ));

    let der = fixture_bytes("envelope-1.der");
    // Outer content type: change the last arc (…2.3 envelopedData → …2.1 data).
    let mut wrong_type = der.clone();
    assert_eq!(wrong_type[15], 0x03);
    wrong_type[15] = 0x01;
    assert!(matches!(
        opener.open(&wrong_type),
        Err(EnvelopeError::WrongContentType { .. })
    ));

    // EnvelopedData version 1 → 2.
    let mut wrong_version = der.clone();
    assert_eq!(&wrong_version[24..27], &[0x02, 0x01, 0x01]);
    wrong_version[26] = 0x02;
    assert_eq!(
        opener.open(&wrong_version),
        Err(EnvelopeError::UnsupportedVersion {
            structure: "EnvelopedData",
            found: 2
        })
    );

    // keyEncryptionAlgorithm 1.2.156.10197.1.301.2 → .301.9.
    let mut wrong_key_algorithm = der.clone();
    assert_eq!(wrong_key_algorithm[133], 0x02);
    wrong_key_algorithm[133] = 0x09;
    assert!(matches!(
        opener.open(&wrong_key_algorithm),
        Err(EnvelopeError::UnsupportedAlgorithm {
            role: "key-encryption",
            ..
        })
    ));

    // contentEncryptionAlgorithm 1.2.156.10197.1.104.2 → .104.9.
    let mut wrong_content_algorithm = der.clone();
    assert_eq!(wrong_content_algorithm[285], 0x02);
    wrong_content_algorithm[285] = 0x09;
    assert!(matches!(
        opener.open(&wrong_content_algorithm),
        Err(EnvelopeError::UnsupportedAlgorithm {
            role: "content-encryption",
            ..
        })
    ));

    // Inner content type …2.1 → …2.2.
    let mut wrong_inner_type = der.clone();
    assert_eq!(wrong_inner_type[273], 0x01);
    wrong_inner_type[273] = 0x02;
    assert!(matches!(
        opener.open(&wrong_inner_type),
        Err(EnvelopeError::WrongContentType { .. })
    ));

    // Serial number changed: addressed to someone else.
    let mut other_serial = der.clone();
    other_serial[110] ^= 0x01;
    assert_eq!(
        opener.open(&other_serial),
        Err(EnvelopeError::NotForThisRecipient)
    );
}

#[test]
fn pem_unwrapping_refuses_other_labels() {
    assert!(envelope::der_from_pem(&fixture_text("platform-enc.cert.pem")).is_err());
    assert!(envelope::der_from_pem("not pem").is_err());
}
