//! SM2 signatures (GM/T 0003.2 with SM3), encoded as DER `SEQUENCE { r INTEGER, s INTEGER }`
//! (GM/T 0009).
//!
//! The hashed message is `Z_A ‖ M` where `Z_A` binds the signer's public key and a
//! distinguishing ID; the protocol uses the standard default ID `1234567812345678`. The
//! RustCrypto `sm2` crate has no default ID, and OpenSSL only agrees with
//! `-pkeyopt distid:1234567812345678`.

use sm2::dsa::signature::{Signer, Verifier};
use sm2::dsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use sm2::elliptic_curve::sec1::ToSec1Point;
use sm2::{PublicKey, SecretKey};
use thiserror::Error;

use crate::verify_tables;

/// The default distinguishing ID of GM/T 0009, used by every party of the protocol.
pub const DEFAULT_DISTINGUISHING_ID: &str = "1234567812345678";

/// Why a signature could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// Not a DER `SEQUENCE { r INTEGER, s INTEGER }` with `r`, `s` in `[1, n-1]`.
    #[error("signature is not a DER SEQUENCE {{ r INTEGER, s INTEGER }} with r, s in [1, n-1]")]
    BadDer,
    /// Well-formed, but not made by this key over these bytes (with this ID).
    #[error("signature does not verify")]
    Mismatch,
    /// The distinguishing ID is longer than the 8191 bytes its 16-bit bit length allows.
    #[error("distinguishing ID is too long")]
    BadDistinguishingId,
    /// Signing failed (the nonce hit a degenerate value; negligible probability).
    #[error("SM2 signing failed")]
    SigningFailed,
}

/// Signs with one SM2 secret key. Keeps the derived public key and `Z_A` input so repeated
/// signing does not recompute them.
#[derive(Clone)]
pub struct Sm2Signer {
    signing_key: SigningKey,
}

impl Sm2Signer {
    /// A signer using the default distinguishing ID `1234567812345678`.
    pub fn new(secret_key: &SecretKey) -> Self {
        // The only failure of `SigningKey::new` is an overlong ID, impossible for the constant;
        // `from_nonzero_scalar` with a validated key has no other failure either.
        match SigningKey::new(DEFAULT_DISTINGUISHING_ID, secret_key) {
            Ok(signing_key) => Self { signing_key },
            Err(_) => unreachable!("the default distinguishing ID is 16 bytes"),
        }
    }

    /// A signer with another distinguishing ID (for tests and foreign peers).
    pub fn with_distinguishing_id(
        secret_key: &SecretKey,
        distinguishing_id: &str,
    ) -> Result<Self, SignatureError> {
        SigningKey::new(distinguishing_id, secret_key)
            .map(|signing_key| Self { signing_key })
            .map_err(|_| SignatureError::BadDistinguishingId)
    }

    /// Signs `message`, returning the DER signature.
    ///
    /// The nonce is derived deterministically from key and message (RFC 6979 style), so
    /// signing the same bytes twice gives the same signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let signature: Signature = self
            .signing_key
            .try_sign(message)
            .map_err(|_| SignatureError::SigningFailed)?;
        Ok(signature.to_der().to_vec())
    }

    /// The public key matching this signer.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(self.signing_key.verifying_key())
    }

    /// A verifier for this signer's signatures.
    pub fn verifier(&self) -> Sm2Verifier {
        let verifying_key = self.signing_key.verifying_key();
        // The ID was accepted when this signer was made, so it is accepted again.
        match Sm2Verifier::with_distinguishing_id(&self.public_key(), verifying_key.distid()) {
            Ok(verifier) => verifier,
            Err(_) => unreachable!("the signer's distinguishing ID was valid"),
        }
    }
}

impl std::fmt::Debug for Sm2Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Sm2Signer")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// Checks signatures of one SM2 public key.
#[derive(Clone, Debug)]
pub struct Sm2Verifier {
    verifying_key: VerifyingKey,
    /// `Z_A`, for the tabled path ([`crate::verify_tables`]); `verifying_key` keeps its own.
    identity_hash: [u8; 32],
    /// The key as uncompressed SEC1, the table cache's key.
    key_bytes: [u8; 65],
}

impl Sm2Verifier {
    /// A verifier using the default distinguishing ID `1234567812345678`.
    pub fn new(public_key: &PublicKey) -> Self {
        match Self::with_distinguishing_id(public_key, DEFAULT_DISTINGUISHING_ID) {
            Ok(verifier) => verifier,
            Err(_) => unreachable!("the default distinguishing ID is 16 bytes"),
        }
    }

    /// A verifier with another distinguishing ID.
    pub fn with_distinguishing_id(
        public_key: &PublicKey,
        distinguishing_id: &str,
    ) -> Result<Self, SignatureError> {
        let verifying_key = VerifyingKey::new(distinguishing_id, *public_key)
            .map_err(|_| SignatureError::BadDistinguishingId)?;
        let identity_hash = verify_tables::identity_hash(distinguishing_id, public_key)?;
        let mut key_bytes = [0u8; 65];
        key_bytes.copy_from_slice(public_key.to_sec1_point(false).as_bytes());
        Ok(Self {
            verifying_key,
            identity_hash,
            key_bytes,
        })
    }

    /// Checks a DER signature over `message` on the plain `sm2` path (see
    /// [`crate::verify_tables::VerifyTables::verify`] for the tabled one).
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<(), SignatureError> {
        let signature = parse_der_signature(der_signature)?;
        self.verify_parsed(message, &signature)
    }

    pub(crate) fn verify_parsed(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SignatureError> {
        self.verifying_key
            .verify(message, signature)
            .map_err(|_| SignatureError::Mismatch)
    }

    /// The public key this verifier checks against.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from(&self.verifying_key)
    }

    pub(crate) fn identity_hash(&self) -> &[u8; 32] {
        &self.identity_hash
    }

    pub(crate) fn key_bytes(&self) -> &[u8; 65] {
        &self.key_bytes
    }
}

/// Parses a DER signature strictly (minimal INTEGERs, no trailing bytes, `r`, `s` in range).
pub(crate) fn parse_der_signature(der_signature: &[u8]) -> Result<Signature, SignatureError> {
    let der = DerSignature::from_bytes(der_signature).map_err(|_| SignatureError::BadDer)?;
    Signature::try_from(der).map_err(|_| SignatureError::BadDer)
}

/// The raw 64-byte `r ‖ s` of a DER signature, parsed strictly: the inverse of
/// [`der_signature_from_raw`] (the fuzz target checks that the two agree).
pub fn raw_signature_from_der(der_signature: &[u8]) -> Result<[u8; 64], SignatureError> {
    let raw = parse_der_signature(der_signature)?.to_bytes();
    let mut out = [0u8; 64];
    out.copy_from_slice(&raw);
    Ok(out)
}

/// Converts a raw 64-byte `r ‖ s` signature (as some devices and GmSSL's Python binding emit)
/// into the DER form the protocol uses.
pub fn der_signature_from_raw(raw_signature: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let signature = Signature::from_slice(raw_signature).map_err(|_| SignatureError::BadDer)?;
    Ok(signature.to_der().to_vec())
}

/// Signs `message` with the default distinguishing ID (convenience for one-off use; keep an
/// [`Sm2Signer`] when signing repeatedly).
pub fn sign(secret_key: &SecretKey, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
    Sm2Signer::new(secret_key).sign(message)
}

/// Checks a DER signature with the default distinguishing ID (convenience for one-off use).
pub fn verify(
    public_key: &PublicKey,
    message: &[u8],
    der_signature: &[u8],
) -> Result<(), SignatureError> {
    Sm2Verifier::new(public_key).verify(message, der_signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> SecretKey {
        let mut bytes = [0u8; 32];
        bytes[31] = 7;
        SecretKey::from_slice(&bytes).unwrap()
    }

    #[test]
    fn sign_then_verify() {
        let signer = Sm2Signer::new(&test_key());
        let signature = signer.sign(b"hello").unwrap();
        signer.verifier().verify(b"hello", &signature).unwrap();
        assert_eq!(
            signer.verifier().verify(b"hellp", &signature),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bad_der_is_typed() {
        let verifier = Sm2Signer::new(&test_key()).verifier();
        assert_eq!(verifier.verify(b"x", b""), Err(SignatureError::BadDer));
        assert_eq!(
            verifier.verify(b"x", &[0x30, 0x03, 0x02, 0x01]),
            Err(SignatureError::BadDer)
        );
        // r = 0 is out of range.
        assert_eq!(
            verifier.verify(b"x", &[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01]),
            Err(SignatureError::BadDer)
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let signer = Sm2Signer::new(&test_key());
        let mut signature = signer.sign(b"hello").unwrap();
        signature.push(0);
        assert_eq!(
            signer.verifier().verify(b"hello", &signature),
            Err(SignatureError::BadDer)
        );
    }

    #[test]
    fn raw_to_der() {
        let signer = Sm2Signer::new(&test_key());
        let der = signer.sign(b"m").unwrap();
        let raw = raw_signature_from_der(&der).unwrap();
        assert_eq!(raw[..], parse_der_signature(&der).unwrap().to_bytes()[..]);
        assert_eq!(der_signature_from_raw(&raw).unwrap(), der);
        assert_eq!(
            der_signature_from_raw(&raw[..63]),
            Err(SignatureError::BadDer)
        );
    }
}
