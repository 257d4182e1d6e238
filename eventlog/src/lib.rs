//! The event store: PostgreSQL (through postgres-es) or the embedded SQLite file (through
//! sqlite-es), chosen once at start-up, with its schema from `migrations/`.
//!
//! cqrs-es's own persisted store is not used: its snapshot and aggregate modes apply events twice
//! (0.5.0), and it stamps one metadata map on every event of a commit. [`ChainedEventStore`]
//! replays events from the repository, links each new event to the previous one by SM3 hash, and
//! turns every unique-key violation (sequence or idempotency key) into a conflict the caller
//! retries.

pub mod backup;
mod batcher;
mod chain;
mod checkpoints;
mod commit_order;
mod error;
pub mod files;
mod group_commit;
mod history;
mod history_reads;
pub mod leases;
mod log;
mod lookups;
mod page_sessions;
pub mod personal;
mod platform;
pub mod rejection_spool;
mod rejections;
mod repository;
mod reseal;
mod statistics;
mod store;
mod tail;

pub use batcher::{BatchHold, BatchStats};
pub use chain::{canonical_json, chain_hash, event_hash, GENESIS_HASH, PREVIOUS_HASH};
pub use checkpoints::{AuditPage, AuditWalk, Consistency, InclusionProof};
pub use commit_order::{CommitPosition, CommittedEvent};
pub use custody_audit::reseal::{ResealEntry, ResealRecord};
pub use error::EventLogError;
pub use group_commit::{AppendHold, AppendStats, MAX_BATCH};
pub use leases::{fence, Lease, LeaseConfig, LeaseKeeper, LeaseRow, Leases};
pub use log::{Backend, EventLog, StoredEvent, StoredEventRef};
pub use page_sessions::{PageSession, SessionLimits};
pub use platform::{
    Org, PlatformStore, QueryAuditEntry, SenderRecord, TokenRecord, TOKEN_USE_RESOLUTION_MS,
};
pub use rejections::{NotKept, Rejection, RejectionSummary, UNAUTHENTICATED_PREFIX_BYTES};
pub use reseal::ResealBatch;
pub use store::{ChainContext, ChainedEventStore};
pub use tail::TAIL_EVENTS;
