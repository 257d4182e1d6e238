//! SM2 public-key encryption (GM/T 0003.4) with the GM/T 0009 DER ciphertext
//! `SM2Cipher ::= SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ciphertext OCTET STRING }`,
//! i.e. C1 (as x, y), C3 (SM3 hash), C2 — the form `openssl pkeyutl -encrypt` writes.

use der::asn1::{OctetStringRef, UintRef};
use der::{Decode, Encode, Sequence};
use rand::CryptoRng;
use sm2::elliptic_curve::sec1::{Coordinates, ToSec1Point};
use sm2::pke::{Cipher, DecryptingKey, EncryptingKey, Mode};
use sm2::{PublicKey, SecretKey};
use thiserror::Error;

/// Size of an SM2 field element / coordinate in bytes.
const COORDINATE_LEN: usize = 32;
/// Size of the SM3 hash C3.
const HASH_LEN: usize = 32;

/// Why an SM2 ciphertext could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Sm2CipherError {
    /// Not a DER `SM2Cipher`, or C1 is not a point of the curve.
    #[error("not a DER SM2Cipher: {0}")]
    Malformed(String),
    /// The hash C3 does not match: wrong key, or the ciphertext was altered.
    #[error("SM2 decryption failed (C3 hash mismatch: wrong key or altered ciphertext)")]
    DecryptionFailed,
    /// SM2 cannot encrypt an empty message.
    #[error("SM2 cannot encrypt an empty message")]
    EmptyPlaintext,
    /// Encryption failed (random source failure).
    #[error("SM2 encryption failed")]
    EncryptionFailed,
}

/// Borrowed view of a DER `SM2Cipher`.
#[derive(Sequence)]
struct Sm2CipherRef<'a> {
    x: IntegerBytes<'a>,
    y: IntegerBytes<'a>,
    hash: &'a OctetStringRef,
    ciphertext: &'a OctetStringRef,
}

/// The content bytes of an `INTEGER`, taken as they are.
///
/// Decoding is deliberately lenient: some encoders write a coordinate as 32 raw bytes even when
/// its top bit is set (a negative INTEGER in strict DER) or keep leading zero bytes. The point
/// is validated on the curve afterwards, so accepting these loses nothing.
#[derive(Clone, Copy)]
struct IntegerBytes<'a>(&'a [u8]);

impl<'a> der::DecodeValue<'a> for IntegerBytes<'a> {
    type Error = der::Error;

    fn decode_value<R: der::Reader<'a>>(reader: &mut R, header: der::Header) -> der::Result<Self> {
        let bytes = reader.read_slice(header.length())?;
        Ok(Self(bytes))
    }
}

impl der::EncodeValue for IntegerBytes<'_> {
    fn value_len(&self) -> der::Result<der::Length> {
        UintRef::new(self.0)?.value_len()
    }

    fn encode_value(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        // UintRef strips leading zero bytes and adds one 0x00 when the top bit is set: the
        // minimal, positive DER INTEGER that OpenSSL and GmSSL expect.
        UintRef::new(self.0)?.encode_value(writer)
    }
}

impl der::FixedTag for IntegerBytes<'_> {
    const TAG: der::Tag = der::Tag::Integer;
}

/// Encodes the DER `SM2Cipher` from its parts (coordinates as 32-byte big-endian values).
pub(crate) fn encode_sm2_cipher(
    x: &[u8],
    y: &[u8],
    hash: &[u8],
    ciphertext: &[u8],
) -> der::Result<Vec<u8>> {
    Sm2CipherRef {
        x: IntegerBytes(x),
        y: IntegerBytes(y),
        hash: OctetStringRef::new(hash)?,
        ciphertext: OctetStringRef::new(ciphertext)?,
    }
    .to_der()
}

/// Left-pads an unsigned big-endian integer to a 32-byte coordinate.
fn coordinate(bytes: &[u8]) -> Result<[u8; COORDINATE_LEN], Sm2CipherError> {
    let first_nonzero = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[first_nonzero..];
    if significant.len() > COORDINATE_LEN {
        return Err(Sm2CipherError::Malformed(
            "coordinate longer than 32 bytes".into(),
        ));
    }
    let mut out = [0u8; COORDINATE_LEN];
    out[COORDINATE_LEN - significant.len()..].copy_from_slice(significant);
    Ok(out)
}

/// Decrypts SM2 ciphertexts for one secret key.
#[derive(Clone)]
pub struct Sm2Decryptor {
    decrypting_key: DecryptingKey,
}

impl Sm2Decryptor {
    /// A decryptor for `secret_key`.
    pub fn new(secret_key: &SecretKey) -> Self {
        Self {
            decrypting_key: DecryptingKey::new(secret_key.clone()),
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_secret_scalar(self.decrypting_key.as_nonzero_scalar())
    }

    /// Decrypts a DER `SM2Cipher`.
    pub fn decrypt_der(&self, der_ciphertext: &[u8]) -> Result<Vec<u8>, Sm2CipherError> {
        let parts = CipherParts::parse(der_ciphertext)?;
        // Re-encoded strictly (minimal positive INTEGERs) for `Cipher::from_der`, which checks
        // that C1 lies on the curve. `Cipher::from_slice` would check the same and then also
        // multiply C1 by the cofactor 1 in constant time: half the cost of a decrypt, for
        // nothing (docs/security.md).
        let strict = encode_sm2_cipher(&parts.x, &parts.y, parts.hash, parts.c2)
            .map_err(|err| Sm2CipherError::Malformed(err.to_string()))?;
        let cipher = Cipher::<sm2::Sm2, sm3::Sm3>::from_der(&strict)
            .map_err(|_| Sm2CipherError::Malformed(NOT_ON_CURVE.into()))?;
        self.decrypting_key
            .decrypt_cipher(&cipher)
            .map_err(|_| Sm2CipherError::DecryptionFailed)
    }

    /// The decrypt this crate used before [`Self::decrypt_der`]: C1 ‖ C3 ‖ C2 through
    /// `Cipher::from_slice`. Kept only as the reference of the equivalence tests and the
    /// benchmark.
    #[doc(hidden)]
    pub fn decrypt_der_from_slice(&self, der_ciphertext: &[u8]) -> Result<Vec<u8>, Sm2CipherError> {
        let parts = CipherParts::parse(der_ciphertext)?;
        let mut raw = Vec::with_capacity(1 + 2 * COORDINATE_LEN + HASH_LEN + parts.c2.len());
        raw.push(0x04);
        raw.extend_from_slice(&parts.x);
        raw.extend_from_slice(&parts.y);
        raw.extend_from_slice(parts.hash);
        raw.extend_from_slice(parts.c2);
        let cipher = Cipher::<sm2::Sm2, sm3::Sm3>::from_slice(&raw, Mode::C1C3C2)
            .map_err(|_| Sm2CipherError::Malformed(NOT_ON_CURVE.into()))?;
        self.decrypting_key
            .decrypt_cipher(&cipher)
            .map_err(|_| Sm2CipherError::DecryptionFailed)
    }
}

const NOT_ON_CURVE: &str = "C1 is not a point of the SM2 curve";

/// The parts of a DER `SM2Cipher` as read leniently, coordinates padded to 32 bytes.
struct CipherParts<'a> {
    x: [u8; COORDINATE_LEN],
    y: [u8; COORDINATE_LEN],
    hash: &'a [u8],
    c2: &'a [u8],
}

impl<'a> CipherParts<'a> {
    fn parse(der_ciphertext: &'a [u8]) -> Result<Self, Sm2CipherError> {
        let parsed = Sm2CipherRef::from_der(der_ciphertext)
            .map_err(|err| Sm2CipherError::Malformed(err.to_string()))?;
        let hash = parsed.hash.as_bytes();
        if hash.len() != HASH_LEN {
            return Err(Sm2CipherError::Malformed(format!(
                "hash is {} bytes, expected {HASH_LEN}",
                hash.len()
            )));
        }
        Ok(Self {
            x: coordinate(parsed.x.0)?,
            y: coordinate(parsed.y.0)?,
            hash,
            c2: parsed.ciphertext.as_bytes(),
        })
    }
}

impl std::fmt::Debug for Sm2Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sm2Decryptor")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` for `public_key`, returning a DER `SM2Cipher`.
pub fn encrypt_der<R: CryptoRng>(
    public_key: &PublicKey,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, Sm2CipherError> {
    if plaintext.is_empty() {
        return Err(Sm2CipherError::EmptyPlaintext);
    }
    let cipher = EncryptingKey::new(*public_key)
        .encrypt_cipher::<R, sm3::Sm3>(rng, plaintext)
        .map_err(|_| Sm2CipherError::EncryptionFailed)?;
    let c1 = cipher.c1().to_sec1_point(false);
    let Coordinates::Uncompressed { x, y } = c1.coordinates() else {
        return Err(Sm2CipherError::EncryptionFailed);
    };
    encode_sm2_cipher(x, y, cipher.c3(), cipher.c2()).map_err(|_| Sm2CipherError::EncryptionFailed)
}

/// Decrypts a DER `SM2Cipher` with `secret_key` (convenience for one-off use).
pub fn decrypt_der(
    secret_key: &SecretKey,
    der_ciphertext: &[u8],
) -> Result<Vec<u8>, Sm2CipherError> {
    Sm2Decryptor::new(secret_key).decrypt_der(der_ciphertext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_with_top_bit_gets_leading_zero() {
        let x = [0x80u8; 32];
        let y = [0x01u8; 32];
        let der = encode_sm2_cipher(&x, &y, &[0u8; 32], &[1, 2, 3]).unwrap();
        // SEQUENCE, then INTEGER of 33 bytes starting with 0x00.
        assert_eq!(&der[2..5], &[0x02, 0x21, 0x00]);
        assert_eq!(&der[5..37], &x);
        // y: no top bit, 32 bytes as they are.
        assert_eq!(&der[37..39], &[0x02, 0x20]);
    }

    #[test]
    fn integer_with_leading_zero_bytes_is_minimal() {
        let mut x = [0x11u8; 32];
        x[0] = 0;
        x[1] = 0;
        x[2] = 0x90; // top bit set after the zeros: one 0x00 must come back
        let mut y = [0x22u8; 32];
        y[0] = 0;
        let der = encode_sm2_cipher(&x, &y, &[0u8; 32], &[1]).unwrap();
        assert_eq!(&der[2..5], &[0x02, 0x1f, 0x00]);
        assert_eq!(&der[5..35], &x[2..]);
        assert_eq!(&der[35..37], &[0x02, 0x1f]);
        assert_eq!(&der[37..68], &y[1..]);
        // And it parses back into the same coordinates.
        let parsed = Sm2CipherRef::from_der(&der).unwrap();
        assert_eq!(coordinate(parsed.x.0).unwrap(), x);
        assert_eq!(coordinate(parsed.y.0).unwrap(), y);
    }

    #[test]
    fn round_trip_and_wrong_key() {
        let mut rng = rand::rng();
        let secret = crate::keys::generate_secret_key(&mut rng);
        let other = crate::keys::generate_secret_key(&mut rng);
        let der = encrypt_der(&secret.public_key(), b"sixteen byte key", &mut rng).unwrap();
        assert_eq!(decrypt_der(&secret, &der).unwrap(), b"sixteen byte key");
        assert_eq!(
            decrypt_der(&other, &der),
            Err(Sm2CipherError::DecryptionFailed)
        );
        assert!(matches!(
            decrypt_der(&secret, &der[..der.len() - 1]),
            Err(Sm2CipherError::Malformed(_))
        ));
        assert_eq!(
            encrypt_der(&secret.public_key(), b"", &mut rng),
            Err(Sm2CipherError::EmptyPlaintext)
        );
    }
}
