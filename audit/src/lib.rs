//! Tamper evidence for the log (SPEC §8, docs/audit.md), with no I/O: the RFC 9162 Merkle tree
//! with SM3 ([`merkle`]) and the SM2-signed checkpoints over its root ([`checkpoint`]).

pub mod checkpoint;
pub mod merkle;

pub use checkpoint::{parse_hash, Checkpoint, CheckpointError, SignedCheckpoint};
pub use merkle::{Frontier, Hash, ProofError};
