//! The fast paths give exactly the answers of the plain ones: tabled SM2 verification against
//! the `sm2` crate's verify, decryption through `Cipher::from_der` against the former
//! `Cipher::from_slice` path, on valid and corrupted inputs.

mod common;

use common::{cabinet_public_key, fixture_bytes as fixture, platform_secret_key};
use custody_protocol::envelope::EnvelopeOpener;
use custody_protocol::sm2enc::{self, Sm2Decryptor};
use custody_protocol::sm2sig::{self, SignatureError, Sm2Signer, Sm2Verifier};
use custody_protocol::verify_tables::{self, VerifyTables, TABLE_AFTER_SIGHTINGS};
use custody_protocol::SecretKey;
use custody_protocol::SignedRequest;
use proptest::prelude::*;
use rand::SeedableRng;
use sm2::elliptic_curve::ff::PrimeField;
use sm2::Scalar;

/// DER `INTEGER` of an unsigned big-endian value (minimal, positive).
fn der_integer(value: &[u8]) -> Vec<u8> {
    let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
    let mut content = value[first..].to_vec();
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        len @ 0..=127 => out.push(len as u8),
        len @ 128..=255 => out.extend([0x81, len as u8]),
        len => out.extend([0x82, (len >> 8) as u8, len as u8]),
    }
    out.extend_from_slice(content);
    out
}

/// DER `SEQUENCE { r INTEGER, s INTEGER }` of any two values, valid or not.
fn der_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut content = der_integer(r);
    content.extend(der_integer(s));
    tlv(0x30, &content)
}

fn scalar_bytes(k: &Scalar) -> Vec<u8> {
    k.to_repr().to_vec()
}

/// The order n of the curve, big-endian.
fn order() -> Vec<u8> {
    common::unhex("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123")
}

fn secret_key() -> impl Strategy<Value = SecretKey> {
    any::<[u8; 32]>().prop_filter_map("not a scalar in [1, n-1]", |bytes| {
        SecretKey::from_slice(&bytes).ok()
    })
}

/// Every answer of `tables` for (message, signature) equals the plain verify's, whether the key
/// is tabled yet or not.
fn assert_same_verdict(
    tables: &VerifyTables,
    verifier: &Sm2Verifier,
    message: &[u8],
    signature: &[u8],
) -> Result<(), TestCaseError> {
    let plain = verifier.verify(message, signature);
    prop_assert_eq!(tables.verify(verifier, message, signature), plain);
    Ok(())
}

/// A cache that tables on first sighting for these tests: seen once beforehand.
fn tabled(verifier: &Sm2Verifier, message: &[u8], signature: &[u8]) -> VerifyTables {
    let tables = VerifyTables::default();
    for _ in 0..TABLE_AFTER_SIGHTINGS {
        let _ = tables.verify(verifier, message, signature);
    }
    assert_eq!(
        tables.len(),
        1,
        "the key is tabled after {TABLE_AFTER_SIGHTINGS} sightings"
    );
    tables
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tabled_verify_equals_plain_verify(
        key in secret_key(),
        other in secret_key(),
        message in prop::collection::vec(any::<u8>(), 0..300),
        flip in any::<(usize, u8)>(),
        random_r in any::<[u8; 32]>(),
        random_s in any::<[u8; 32]>(),
        id in "[ -~]{0,40}",
    ) {
        let signer = Sm2Signer::with_distinguishing_id(&key, &id).unwrap();
        let verifier = signer.verifier();
        let signature = signer.sign(&message).unwrap();
        let tables = tabled(&verifier, &message, &signature);

        // A valid signature.
        prop_assert_eq!(tables.verify(&verifier, &message, &signature), Ok(()));
        assert_same_verdict(&tables, &verifier, &message, &signature)?;
        // Another message, another ID, another key's signature.
        let mut altered = message.clone();
        altered.push(flip.1);
        assert_same_verdict(&tables, &verifier, &altered, &signature)?;
        let default_id = Sm2Verifier::new(&signer.public_key());
        assert_same_verdict(&tables, &default_id, &message, &signature)?;
        let foreign = Sm2Signer::new(&other).sign(&message).unwrap();
        assert_same_verdict(&tables, &verifier, &message, &foreign)?;
        // A byte of the DER changed.
        let mut corrupted = signature.clone();
        let at = flip.0 % corrupted.len();
        corrupted[at] ^= flip.1.max(1);
        assert_same_verdict(&tables, &verifier, &message, &corrupted)?;
        // Random r and s, mostly in range and wrong, sometimes 0 or ≥ n.
        assert_same_verdict(&tables, &verifier, &message, &der_signature(&random_r, &random_s))?;

        let raw = sm2sig::raw_signature_from_der(&signature).unwrap();
        let (r_bytes, s_bytes) = raw.split_at(32);
        let r = Scalar::from_repr(r_bytes.try_into().unwrap()).unwrap();
        let s = Scalar::from_repr(s_bytes.try_into().unwrap()).unwrap();
        // r and s swapped; r + s = n (t = 0); s·G + t·P at infinity.
        assert_same_verdict(&tables, &verifier, &message, &der_signature(s_bytes, r_bytes))?;
        let minus_r = scalar_bytes(&-r);
        prop_assert_eq!(
            tables.verify(&verifier, &message, &der_signature(r_bytes, &minus_r)),
            Err(SignatureError::Mismatch)
        );
        assert_same_verdict(&tables, &verifier, &message, &der_signature(r_bytes, &minus_r))?;
        let d = *key.to_nonzero_scalar();
        let to_infinity = -(r * d) * (Scalar::ONE + d).invert().unwrap();
        prop_assert_eq!(
            tables.verify(&verifier, &message, &der_signature(r_bytes, &scalar_bytes(&to_infinity))),
            Err(SignatureError::Mismatch)
        );
        assert_same_verdict(
            &tables, &verifier, &message, &der_signature(r_bytes, &scalar_bytes(&to_infinity)),
        )?;
        // Out of range: 0, n, n + 1 and n - 1 (in range) for r and for s.
        let n = order();
        let mut n_plus_one = n.clone();
        n_plus_one[31] += 1;
        let n_minus_one = scalar_bytes(&-Scalar::ONE);
        for bad in [&[0u8][..], &n, &n_plus_one, &n_minus_one] {
            assert_same_verdict(&tables, &verifier, &message, &der_signature(bad, s_bytes))?;
            assert_same_verdict(&tables, &verifier, &message, &der_signature(r_bytes, bad))?;
        }
        // Valid again at the end: nothing above changed the table.
        let _ = s;
        prop_assert_eq!(tables.verify(&verifier, &message, &signature), Ok(()));
    }

    #[test]
    fn decrypt_from_der_equals_decrypt_from_slice(
        key in secret_key(),
        other in secret_key(),
        plaintext in prop::collection::vec(any::<u8>(), 1..80),
        seed in any::<u64>(),
        flip in any::<(usize, u8)>(),
        cut in any::<usize>(),
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let decryptor = Sm2Decryptor::new(&key);
        let ciphertext = sm2enc::encrypt_der(&key.public_key(), &plaintext, &mut rng).unwrap();
        let same = |der: &[u8]| -> Result<(), TestCaseError> {
            prop_assert_eq!(decryptor.decrypt_der(der), decryptor.decrypt_der_from_slice(der));
            Ok(())
        };
        prop_assert_eq!(decryptor.decrypt_der(&ciphertext), Ok(plaintext.clone()));
        same(&ciphertext)?;
        same(&sm2enc::encrypt_der(&other.public_key(), &plaintext, &mut rng).unwrap())?;
        let mut corrupted = ciphertext.clone();
        let at = flip.0 % corrupted.len();
        corrupted[at] ^= flip.1.max(1);
        same(&corrupted)?;
        same(&ciphertext[..cut % ciphertext.len()])?;
        let mut longer = ciphertext.clone();
        longer.push(flip.1);
        same(&longer)?;
        // The lenient encodings some peers write: coordinates with extra leading zeros or as
        // 32 raw bytes with the top bit set, and C1 moved off the curve.
        for lenient in lenient_reencodings(&ciphertext) {
            same(&lenient)?;
        }
    }

    #[test]
    fn envelope_open_equals_former_open_on_corrupted_envelopes(flip in any::<(usize, u8)>()) {
        let opener = EnvelopeOpener::new(&platform_secret_key());
        let mut envelope = fixture("envelope-1.der");
        let at = flip.0 % envelope.len();
        envelope[at] ^= flip.1.max(1);
        prop_assert_eq!(opener.open(&envelope), opener.open_from_slice(&envelope));
    }
}

/// The parts of a strict DER SM2Cipher: x, y (as unsigned 32-byte values), C3, C2.
fn cipher_parts(der: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut items = Vec::new();
    let (mut rest, _) = read_tlv(der);
    while !rest.is_empty() {
        let (content, after) = read_tlv(rest);
        items.push(content.to_vec());
        rest = after;
    }
    let pad = |v: &[u8]| {
        let v = &v[v.len().saturating_sub(32)..];
        let mut out = vec![0u8; 32 - v.len()];
        out.extend_from_slice(v);
        out
    };
    (
        pad(&items[0]),
        pad(&items[1]),
        items[2].clone(),
        items[3].clone(),
    )
}

/// Content and what follows of the TLV at the start of `der`.
fn read_tlv(der: &[u8]) -> (&[u8], &[u8]) {
    let (len, header) = match der[1] {
        0x81 => (usize::from(der[2]), 3),
        0x82 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        len => (usize::from(len), 2),
    };
    (&der[header..header + len], &der[header + len..])
}

fn lenient_reencodings(der: &[u8]) -> Vec<Vec<u8>> {
    let (x, y, c3, c2) = cipher_parts(der);
    let cipher = |x: Vec<u8>, y: Vec<u8>| {
        let mut content = tlv(0x02, &x);
        content.extend(tlv(0x02, &y));
        content.extend(tlv(0x04, &c3));
        content.extend(tlv(0x04, &c2));
        tlv(0x30, &content)
    };
    let padded = |v: &[u8]| [&[0u8, 0][..], v].concat();
    let mut off_curve = y.clone();
    off_curve[31] ^= 1;
    let mut too_long = vec![1u8];
    too_long.extend_from_slice(&x);
    vec![
        cipher(x.clone(), y.clone()),
        cipher(padded(&x), padded(&y)),
        cipher(x.clone(), off_curve),
        cipher(too_long, y.clone()),
        cipher(Vec::new(), y),
    ]
}

#[test]
fn fixture_request_verifies_on_both_paths() {
    let verifier = Sm2Verifier::new(&cabinet_public_key());
    let request = SignedRequest::from_json(&fixture("request-1.json")).unwrap();
    let tables = VerifyTables::default();
    for _ in 0..3 {
        request.verify_sender(&verifier).unwrap();
        request.verify_sender_tabled(&verifier, &tables).unwrap();
    }
    assert_eq!(tables.len(), 1);
}

#[test]
fn fixture_envelopes_open_alike() {
    let opener = EnvelopeOpener::new(&platform_secret_key());
    let envelope = fixture("envelope-1.der");
    assert_eq!(opener.open(&envelope), opener.open_from_slice(&envelope));
    assert!(opener.open(&envelope).is_ok());
}

#[test]
fn a_key_is_tabled_on_its_second_sighting() {
    let signer = Sm2Signer::new(&platform_secret_key());
    let signature = signer.sign(b"m").unwrap();
    let tables = VerifyTables::default();
    tables.verify(&signer.verifier(), b"m", &signature).unwrap();
    assert_eq!(tables.len(), 0, "first sighting: plain path");
    tables.verify(&signer.verifier(), b"m", &signature).unwrap();
    assert_eq!(tables.len(), 1, "second sighting: tabled");
}

#[test]
fn the_cache_holds_no_more_tables_than_its_budget() {
    let tables = VerifyTables::with_memory_budget(2 * verify_tables::key_table_bytes());
    assert_eq!(tables.capacity(), 2);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..4 {
        let signer = Sm2Signer::new(&custody_protocol::keys::generate_secret_key(&mut rng));
        let signature = signer.sign(b"m").unwrap();
        for _ in 0..3 {
            tables.verify(&signer.verifier(), b"m", &signature).unwrap();
        }
        assert!(tables.len() <= 2);
    }
    assert_eq!(tables.len(), 2);

    let none = VerifyTables::with_memory_budget(0);
    let signer = Sm2Signer::new(&platform_secret_key());
    let signature = signer.sign(b"m").unwrap();
    for _ in 0..3 {
        none.verify(&signer.verifier(), b"m", &signature).unwrap();
    }
    assert!(none.is_empty(), "a zero budget keeps every verify plain");
}

#[test]
fn scalar_helpers_agree() {
    // -1 = n - 1: the helper for n matches the curve's order.
    let mut n_minus_one = order();
    n_minus_one[31] -= 1;
    assert_eq!(scalar_bytes(&-Scalar::ONE), n_minus_one);
    assert!(bool::from(Scalar::ZERO.is_zero()));
}
