//! Signed checkpoints (docs/audit.md, "Checkpoints"): the platform's SM2 signature, with the
//! default distinguishing ID, over
//! `custody-checkpoint/v1\n<tree_size>\n<root hash, lower-case hex>\n<timestamp, RFC 3339>\n`.

use base64::Engine;
use custody_protocol::sm2sig::{SignatureError, Sm2Signer, Sm2Verifier};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::merkle::Hash;

/// The first line of the signed bytes: names the format, so a signature over anything else
/// never passes for a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "custody-checkpoint/v1";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CheckpointError {
    #[error("root_hash is not 64 hex digits")]
    BadRootHash,
    #[error("signature is not base64")]
    BadSignatureEncoding,
    #[error("timestamp contains a line break")]
    BadTimestamp,
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

/// What a checkpoint says: the first `tree_size` events of the log in commit order have this
/// Merkle root, as of `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub tree_size: u64,
    pub root_hash: Hash,
    /// RFC 3339, as signed.
    pub timestamp: String,
}

impl Checkpoint {
    /// The exact bytes the platform signs.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, CheckpointError> {
        if self.timestamp.contains('\n') {
            return Err(CheckpointError::BadTimestamp);
        }
        Ok(format!(
            "{CHECKPOINT_FORMAT}\n{}\n{}\n{}\n",
            self.tree_size,
            hex::encode(self.root_hash),
            self.timestamp
        )
        .into_bytes())
    }

    pub fn sign(&self, signer: &Sm2Signer) -> Result<SignedCheckpoint, CheckpointError> {
        let signature = signer.sign(&self.signed_bytes()?)?;
        Ok(SignedCheckpoint::new(self, &signature))
    }
}

/// A checkpoint as stored, served and exported: JSON
/// `{tree_size, root_hash (hex), timestamp, signature (base64 of the DER signature)}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    pub root_hash: String,
    pub timestamp: String,
    pub signature: String,
}

impl SignedCheckpoint {
    pub fn new(checkpoint: &Checkpoint, der_signature: &[u8]) -> SignedCheckpoint {
        SignedCheckpoint {
            tree_size: checkpoint.tree_size,
            root_hash: hex::encode(checkpoint.root_hash),
            timestamp: checkpoint.timestamp.clone(),
            signature: base64::engine::general_purpose::STANDARD.encode(der_signature),
        }
    }

    /// The checkpoint this claims, parsed but not yet verified.
    pub fn checkpoint(&self) -> Result<Checkpoint, CheckpointError> {
        Ok(Checkpoint {
            tree_size: self.tree_size,
            root_hash: parse_hash(&self.root_hash).ok_or(CheckpointError::BadRootHash)?,
            timestamp: self.timestamp.clone(),
        })
    }

    /// The checkpoint, once its signature verifies under `verifier`.
    pub fn verify(&self, verifier: &Sm2Verifier) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = self.checkpoint()?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&self.signature)
            .map_err(|_| CheckpointError::BadSignatureEncoding)?;
        verifier.verify(&checkpoint.signed_bytes()?, &signature)?;
        Ok(checkpoint)
    }
}

/// 64 hex digits into a hash.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_protocol::SecretKey;

    fn signer() -> Sm2Signer {
        let mut bytes = [0u8; 32];
        bytes[31] = 11;
        Sm2Signer::new(&SecretKey::from_slice(&bytes).unwrap())
    }

    #[test]
    fn signed_bytes_are_the_documented_text() {
        let checkpoint = Checkpoint {
            tree_size: 3,
            root_hash: [0xab; 32],
            timestamp: "2026-12-01T11:00:00+00:00".into(),
        };
        assert_eq!(
            String::from_utf8(checkpoint.signed_bytes().unwrap()).unwrap(),
            format!(
                "custody-checkpoint/v1\n3\n{}\n2026-12-01T11:00:00+00:00\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn a_changed_field_fails_the_signature() {
        let signer = signer();
        let checkpoint = Checkpoint {
            tree_size: 3,
            root_hash: [7; 32],
            timestamp: "2026-12-01T11:00:00Z".into(),
        };
        let signed = checkpoint.sign(&signer).unwrap();
        assert_eq!(signed.verify(&signer.verifier()).unwrap(), checkpoint);
        let mut other = signed.clone();
        other.tree_size = 4;
        assert!(other.verify(&signer.verifier()).is_err());
        let mut other = signed.clone();
        other.root_hash.replace_range(0..1, "1");
        assert!(other.verify(&signer.verifier()).is_err());
        let mut other = signed;
        other.timestamp.push('0');
        assert!(other.verify(&signer.verifier()).is_err());
    }
}
