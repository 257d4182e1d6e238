//! The read side.
//!
//! - [`feed`]: the commit-ordered stream of stored events a projector consumes, from the store
//!   itself (polling) or from NATS JetStream, and the relay that publishes committed events to
//!   JetStream.
//! - [`views`]: the views of SPEC §7 and how each event changes them.
//! - [`projector`]: applies a feed to a view, exactly once per aggregate sequence, and rebuilds
//!   a view into a fresh generation while the old one serves; [`ProjectorGroup`] applies every
//!   view from one feed, in one transaction a batch.
//! - [`reconciliations`]: the nightly reconciliation's results as a view, and their readers.
//! - `stats`: the statistics' counters per unit and day, which the stats reader adds up.
//! - [`lag`]: the projection-lag histogram each projector keeps of the events it applies live.
//! - [`read`]: the typed readers of the views, the only queries the read API makes of them.
//! - [`bulk`]: the multi-row writes and `IN (…)` look-ups of the views (and of the process
//!   managers' tables), in a few statement shapes.

pub mod bulk;
pub mod feed;
mod group;
pub mod lag;
pub mod personal;
pub mod projector;
pub mod read;
pub mod reconciliations;
pub mod relay;
mod scan;
mod stats;
pub mod views;

pub use group::{GroupStop, ProjectorGroup};
pub use lag::LagSummary;
pub use projector::{status, ProjectionStatus, Projector, RebuildProgress};
pub use views::Projection;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("view database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] custody_eventlog::EventLogError),
    #[error(transparent)]
    Feed(#[from] feed::FeedError),
    #[error("stored event does not decode: {0}")]
    Decode(String),
    #[error(transparent)]
    Relay(#[from] relay::RelayError),
}
