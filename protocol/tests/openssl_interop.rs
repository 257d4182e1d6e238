//! Interop with the real `openssl` command (OpenSSL 3): signatures both ways, SM2Cipher both
//! ways, the content key of a Rust-sealed envelope, and the generated certificate and keys.
//!
//! Skipped (with a note on stderr) when no OpenSSL 3 is on the PATH.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use custody_protocol::envelope;
use custody_protocol::keys;
use custody_protocol::sm2enc::{self, Sm2Decryptor};
use custody_protocol::sm2sig::{Sm2Signer, Sm2Verifier};
use custody_protocol::VerifyTables;

const DISTID: &str = "distid:1234567812345678";

macro_rules! require_openssl {
    () => {
        if !openssl_available() {
            eprintln!("skipping: no OpenSSL 3 `openssl` on PATH");
            return;
        }
    };
}

#[test]
fn openssl_signature_verifies_in_rust() {
    require_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let message_path = dir.path().join("message.bin");
    let signature_path = dir.path().join("signature.der");
    let message =
        b"1\nsjsb-xt\n00112233445566778899aabbccddeeff\n1795401005000\nXJH-Q2555061\neyJ9";
    fs::write(&message_path, message).unwrap();
    let key = fixture_path("cabinet-XJH-Q2555061.key.pem");
    openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        path_str(&key),
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        path_str(&message_path),
        "-out",
        path_str(&signature_path),
    ]);
    let signature = fs::read(&signature_path).unwrap();
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    verifier.verify(message, &signature).unwrap();
    assert!(verifier.verify(b"other", &signature).is_err());
    // And through the key's table (tabled from the second sighting on).
    let tables = VerifyTables::default();
    for _ in 0..3 {
        tables.verify(&verifier, message, &signature).unwrap();
        assert!(tables.verify(&verifier, b"other", &signature).is_err());
    }
    assert_eq!(tables.len(), 1);
}

#[test]
fn rust_signature_verifies_in_openssl() {
    require_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let message_path = dir.path().join("message.bin");
    let signature_path = dir.path().join("signature.der");
    let message = "签名 over UTF-8 bytes\nwith newlines".as_bytes();
    fs::write(&message_path, message).unwrap();
    let signature = Sm2Signer::new(&cabinet_secret_key()).sign(message).unwrap();
    fs::write(&signature_path, &signature).unwrap();
    let public = fixture_path("cabinet-XJH-Q2555061.pub.pem");
    let verify_args = [
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path_str(&public),
        "-rawin",
        "-digest",
        "sm3",
        "-pkeyopt",
        DISTID,
        "-in",
        path_str(&message_path),
        "-sigfile",
        path_str(&signature_path),
    ];
    let (ok, output) = openssl_status(&verify_args);
    assert!(ok, "openssl refused the Rust signature: {output}");

    // And a tampered message fails in OpenSSL too (the check above is not vacuous).
    fs::write(&message_path, b"tampered").unwrap();
    let (ok, _) = openssl_status(&verify_args);
    assert!(!ok);
}

#[test]
fn content_key_of_rust_envelope_decrypts_in_openssl() {
    require_openssl!();
    let mut rng = rand::rng();
    let record = fixture_bytes("record-1.bin");
    let sealed = envelope::seal(&record, &platform_certificate(), &mut rng).unwrap();
    let parsed = envelope::parse(&sealed).unwrap();
    assert_eq!(
        parsed.recipients[0].key_encryption_algorithm,
        custody_protocol::oid::SM2_ENCRYPTION
    );
    let encrypted_key = &parsed.recipients[0].encrypted_key;

    let dir = tempfile::tempdir().unwrap();
    let encrypted_key_path = dir.path().join("key.sm2");
    let key_path = dir.path().join("key.bin");
    fs::write(&encrypted_key_path, encrypted_key).unwrap();
    let platform_key = fixture_path("platform-enc.key.pem");
    openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        path_str(&platform_key),
        "-in",
        path_str(&encrypted_key_path),
        "-out",
        path_str(&key_path),
    ]);
    let openssl_key = fs::read(&key_path).unwrap();
    assert_eq!(openssl_key.len(), 16);
    assert_eq!(
        openssl_key,
        sm2enc::decrypt_der(&platform_secret_key(), encrypted_key).unwrap()
    );

    // With that key OpenSSL's own SM4-CBC decrypts the content to the record.
    let iv_der = parsed.content_encryption_parameters_der.clone().unwrap();
    assert_eq!(&iv_der[..2], &[0x04, 0x10]);
    let content_path = dir.path().join("content.bin");
    let plain_path = dir.path().join("plain.bin");
    fs::write(&content_path, parsed.encrypted_content.unwrap()).unwrap();
    openssl(&[
        "enc",
        "-d",
        "-sm4-cbc",
        "-K",
        &hex(&openssl_key),
        "-iv",
        &hex(&iv_der[2..]),
        "-in",
        path_str(&content_path),
        "-out",
        path_str(&plain_path),
    ]);
    assert_eq!(fs::read(&plain_path).unwrap(), record);
}

#[test]
fn many_rust_ciphertexts_decrypt_in_openssl() {
    // C1 coordinates with the top bit set or leading zero bytes need careful INTEGER
    // encoding; 24 random ciphertexts hit a top bit set with near certainty.
    require_openssl!();
    let mut rng = rand::rng();
    let dir = tempfile::tempdir().unwrap();
    let platform_key = fixture_path("platform-enc.key.pem");
    let public = platform_secret_key().public_key();
    for round in 0..24 {
        let plaintext = format!("content key {round:02}....");
        let ciphertext = sm2enc::encrypt_der(&public, plaintext.as_bytes(), &mut rng).unwrap();
        let in_path = dir.path().join(format!("c{round}"));
        let out_path = dir.path().join(format!("p{round}"));
        fs::write(&in_path, &ciphertext).unwrap();
        openssl(&[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            path_str(&platform_key),
            "-in",
            path_str(&in_path),
            "-out",
            path_str(&out_path),
        ]);
        assert_eq!(fs::read(&out_path).unwrap(), plaintext.as_bytes());
    }
}

#[test]
fn openssl_ciphertext_decrypts_in_rust() {
    require_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let decryptor = Sm2Decryptor::new(&platform_secret_key());
    let public = fixture_path("platform-enc.pub.pem");
    for round in 0..8 {
        let plain_path = dir.path().join(format!("p{round}"));
        let cipher_path = dir.path().join(format!("c{round}"));
        let plaintext: Vec<u8> = (0..16u8).map(|b| b.wrapping_mul(round + 3)).collect();
        fs::write(&plain_path, &plaintext).unwrap();
        openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            path_str(&public),
            "-in",
            path_str(&plain_path),
            "-out",
            path_str(&cipher_path),
        ]);
        let ciphertext = fs::read(&cipher_path).unwrap();
        assert_eq!(decryptor.decrypt_der(&ciphertext).unwrap(), plaintext);
    }
}

#[test]
fn generated_certificate_and_keys_are_accepted_by_openssl() {
    require_openssl!();
    let mut rng = rand::rng();
    let generated = keys::generate_platform_encryption_key(
        "CN=platform-enc,O=Custody,C=CN",
        Duration::from_secs(10 * 365 * 24 * 3600),
        &mut rng,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    generated.write_files(dir.path(), "platform-enc").unwrap();
    let cert_path = dir.path().join("platform-enc.cert.pem");
    let key_path = dir.path().join("platform-enc.key.pem");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!format!("{generated:?}").contains("PRIVATE KEY"));

    let text = openssl(&["x509", "-in", path_str(&cert_path), "-noout", "-text"]);
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(text.contains("SM2-with-SM3"), "{text}");
    assert!(text.contains("CN = platform-enc"), "{text}");
    assert!(text.contains("ASN1 OID: SM2"), "{text}");

    // The certificate's signature checks out (OpenSSL uses the default SM2 ID for X.509).
    let (ok, output) = openssl_status(&[
        "verify",
        "-CAfile",
        path_str(&cert_path),
        path_str(&cert_path),
    ]);
    assert!(ok, "openssl verify: {output}");

    // OpenSSL reads the PKCS#8 key, and derives the same public key PEM.
    let derived = openssl(&["pkey", "-in", path_str(&key_path), "-pubout"]);
    assert_eq!(
        String::from_utf8_lossy(&derived.stdout).trim(),
        generated.public_key_pem.trim()
    );
    let certificate_key = openssl(&["x509", "-in", path_str(&cert_path), "-noout", "-pubkey"]);
    assert_eq!(
        String::from_utf8_lossy(&certificate_key.stdout).trim(),
        generated.public_key_pem.trim()
    );

    // An envelope sealed for the generated certificate opens with the generated key.
    let sealed = envelope::seal(b"round trip", &generated.certificate, &mut rng).unwrap();
    let opener = envelope::EnvelopeOpener::with_certificate(
        &keys::secret_key_from_pkcs8_pem(&generated.secret_key_pem).unwrap(),
        &custody_protocol::Certificate::from_pem(&generated.certificate_pem).unwrap(),
    )
    .unwrap();
    assert_eq!(opener.open(&sealed).unwrap(), b"round trip");
}

#[test]
fn openssl_generated_key_loads_in_rust() {
    require_openssl!();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("key.pem");
    let pub_path = dir.path().join("pub.pem");
    openssl(&["genpkey", "-algorithm", "SM2", "-out", path_str(&key_path)]);
    openssl(&[
        "pkey",
        "-in",
        path_str(&key_path),
        "-pubout",
        "-out",
        path_str(&pub_path),
    ]);
    let secret = keys::secret_key_from_pkcs8_pem(&fs::read_to_string(&key_path).unwrap()).unwrap();
    let public = keys::public_key_from_spki_pem(&fs::read_to_string(&pub_path).unwrap()).unwrap();
    assert_eq!(secret.public_key(), public);
}
