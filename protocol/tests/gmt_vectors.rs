//! Standard vectors: SM3 and SM4 (GM/T 0004, GM/T 0002) and the GM/T 0003.5 SM2 signature.

mod common;

use common::{hex, unhex};
use custody_protocol::sm2sig::{self, SignatureError, Sm2Signer, Sm2Verifier};
use custody_protocol::{PublicKey, SecretKey, VerifyTables};
use sm3::{Digest, Sm3};
use sm4::cipher::{Array, BlockCipherEncrypt, KeyInit};

#[test]
fn sm3_abc() {
    assert_eq!(
        hex(&Sm3::digest(b"abc")),
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    );
}

#[test]
fn sm3_abcd_times_16() {
    assert_eq!(
        hex(&Sm3::digest("abcd".repeat(16).as_bytes())),
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    );
}

fn sm4_vector_key() -> Vec<u8> {
    unhex("0123456789abcdeffedcba9876543210")
}

#[test]
fn sm4_single_block() {
    let key = sm4_vector_key();
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = Array::try_from(key.as_slice()).unwrap();
    cipher.encrypt_block(&mut block);
    assert_eq!(hex(&block), "681edf34d206965e86b3e94f536e4246");
}

#[test]
fn sm4_one_million_encryptions() {
    let key = sm4_vector_key();
    let cipher = sm4::Sm4::new_from_slice(&key).unwrap();
    let mut block = Array::try_from(key.as_slice()).unwrap();
    for _ in 0..1_000_000 {
        cipher.encrypt_block(&mut block);
    }
    assert_eq!(hex(&block), "595298c7c6fd271f0402f804c33d3f66");
}

const VECTOR_PUBLIC_KEY: &str =
    "04 09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020 \
                                 CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13";
const VECTOR_R: &str = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3";
const VECTOR_S: &str = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA";
const VECTOR_SECRET: &str = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8";

fn vector_signature_der() -> Vec<u8> {
    let mut raw = unhex(VECTOR_R);
    raw.extend(unhex(VECTOR_S));
    sm2sig::der_signature_from_raw(&raw).unwrap()
}

#[test]
fn sm2_standard_signature_verifies_with_default_id() {
    let public_key = PublicKey::from_sec1_bytes(&unhex(VECTOR_PUBLIC_KEY)).unwrap();
    Sm2Verifier::new(&public_key)
        .verify(b"message digest", &vector_signature_der())
        .unwrap();
    // The free function uses the same default ID.
    sm2sig::verify(&public_key, b"message digest", &vector_signature_der()).unwrap();
    // The tabled path computes Z_A itself: it must agree on the standard's vector.
    let tables = VerifyTables::default();
    let verifier = Sm2Verifier::new(&public_key);
    let other_id = Sm2Verifier::with_distinguishing_id(&public_key, "1234567812345679").unwrap();
    for _ in 0..3 {
        tables
            .verify(&verifier, b"message digest", &vector_signature_der())
            .unwrap();
        assert_eq!(
            tables.verify(&other_id, b"message digest", &vector_signature_der()),
            Err(SignatureError::Mismatch)
        );
    }
    assert_eq!(tables.len(), 1);
}

#[test]
fn sm2_standard_signature_fails_with_another_id_or_message() {
    let public_key = PublicKey::from_sec1_bytes(&unhex(VECTOR_PUBLIC_KEY)).unwrap();
    let other_id = Sm2Verifier::with_distinguishing_id(&public_key, "1234567812345679").unwrap();
    assert_eq!(
        other_id.verify(b"message digest", &vector_signature_der()),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        Sm2Verifier::new(&public_key).verify(b"message digesT", &vector_signature_der()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn sm2_standard_secret_key_matches_public_key_and_signs_verifiably() {
    let secret_key = SecretKey::from_slice(&unhex(VECTOR_SECRET)).unwrap();
    let expected = PublicKey::from_sec1_bytes(&unhex(VECTOR_PUBLIC_KEY)).unwrap();
    assert_eq!(secret_key.public_key(), expected);
    // The nonce is deterministic, so the standard's (r, s) cannot be reproduced; our own
    // signature must verify all the same.
    let signer = Sm2Signer::new(&secret_key);
    let signature = signer.sign(b"message digest").unwrap();
    Sm2Verifier::new(&expected)
        .verify(b"message digest", &signature)
        .unwrap();
}
