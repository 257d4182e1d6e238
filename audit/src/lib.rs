//! Tamper evidence for the log (SPEC §8, docs/audit.md), with no I/O: the RFC 9162 Merkle tree
//! with SM3 ([`merkle`]), the SM2-signed checkpoints over its root ([`checkpoint`]), the
//! events' hash chain ([`chain`]) and the offline check of an exported bundle ([`bundle`]).

pub mod bundle;
pub mod chain;
pub mod checkpoint;
pub mod merkle;
pub mod reseal;

pub use checkpoint::{parse_hash, Checkpoint, CheckpointError, SignedCheckpoint};
pub use merkle::{Frontier, Hash, NodeId, ProofError, ProofPlan};
