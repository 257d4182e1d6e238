//! The signed envelope ingress (SPEC §5): `POST /yth_g1xt/api/v1/{mstype}`.
//!
//! Each request goes through the same gates, in this order, and the first that refuses answers:
//! size (1 MiB) → envelope JSON → mstype matches the path → admission (429) → freshness of
//! `c.time` → the sender is registered for this message → `sig` (and `rsig`) verify → the cabinet
//! is active → `c.reqid` is new → the message's own business rules. Every refusal from the
//! envelope JSON on, except 429, is kept with the whole body in the rejected-reports log.

pub mod admission;
mod cabinet;
pub mod crypto_pool;
mod exit_entry;
mod fields;
#[doc(hidden)]
pub mod fuzzing;
mod ingress;
mod lists;
mod messages;
mod reconciliation;
pub mod rejection_log;
pub mod rejection_quota;
mod reply;
mod unit;

pub use ingress::{receive, MAX_BODY_BYTES};
pub(crate) use messages::MessageType;
