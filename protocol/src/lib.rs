//! The signed envelope protocol of the custody platform (SPEC.md §5).
//!
//! - [`keys`]: SM2 keys as PKCS#8 / SubjectPublicKeyInfo PEM, X.509 certificates, the platform's
//!   self-signed encryption certificate.
//! - [`sm2sig`]: SM2 signatures (SM3, distinguishing ID `1234567812345678`, DER `SEQUENCE {r, s}`).
//! - [`sm2enc`]: SM2 public-key encryption with the GM/T 0009 DER `SM2Cipher` (C1C3C2).
//! - [`verify_tables`]: SM2 verification through precomputed tables of `G` and of each device
//!   key, and the bounded cache of those tables.
//! - [`envelope`]: the GM/T 0010 digital envelope (SM2 key transport + SM4-CBC content).
//! - [`request`]: the JSON request envelope, its signed bytes, `sig` and `rsig`.
//! - [`record`]: the 137-byte fixed-width document record carried inside the envelope.
//!
//! Everything that reads outside input returns a typed error and never panics.

pub mod ceiling;
pub mod envelope;
pub mod keys;
pub mod oid;
pub mod record;
pub mod request;
pub mod sm2enc;
pub mod sm2sig;
pub mod verify_tables;

/// SM2 public key (re-exported so callers need not depend on `sm2` themselves).
pub use sm2::PublicKey;
/// SM2 secret key (re-exported so callers need not depend on `sm2` themselves).
pub use sm2::SecretKey;

pub use envelope::{EnvelopeError, EnvelopeOpener};
pub use keys::{Certificate, KeyError};
pub use record::{DocumentRecord, RecordError, RecordField};
pub use request::{NewRequest, RequestError, SignedRequest};
pub use sm2sig::{SignatureError, Sm2Signer, Sm2Verifier};
pub use verify_tables::VerifyTables;
