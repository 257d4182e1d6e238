//! Personal data at rest (docs/personal-data.md).
//!
//! Every personal field the service stores is sealed under the data key of the person it is
//! about: SM4-CBC, then HMAC-SM3 over the associated data, IV and ciphertext (encrypt-then-MAC,
//! GM/T primitives only, each one a plain standard an auditor's `openssl` can recompute). Data
//! keys are stored wrapped by a master key that lives outside the database ([`KeyWrap`]: a key
//! file here, a key-management system in production); destroying one person's wrapped data key
//! makes every stored copy of their data unreadable (crypto-shredding).

mod master;
mod seal;

pub use master::{KeyWrap, MasterKeyFile, MasterKeys};
pub use seal::{blind_index, open, seal, DataKey, SEALED_OVERHEAD_MAX};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The sealed bytes were altered, belong to another place (associated data), or were sealed
    /// under another key.
    #[error("sealed data does not authenticate")]
    Unauthentic,
    #[error("sealed data is malformed: {0}")]
    Malformed(&'static str),
    #[error("{path}: {reason}")]
    KeyFile { path: String, reason: String },
}
