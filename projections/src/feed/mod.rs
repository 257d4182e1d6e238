//! The contract between the transport and the projectors.
//!
//! A projector is written once against [`EventFeed`]. Whatever the feed does (JetStream may lose,
//! duplicate or redeliver), the projector stays correct: it applies an event only once per
//! aggregate sequence, fills gaps from the event store, and acks only after its transaction has
//! committed.
//!
//! Two feeds implement it: [`StoreFeed`] polls the event store in commit order, and
//! [`JetStreamFeed`] reads the stream the relay ([`crate::relay`]) fills. [`wire`] is the form
//! an event takes on the stream.

mod jetstream;
mod store;
pub mod wire;

use std::time::Duration;

use custody_eventlog::{CommitPosition, StoredEvent};

pub use jetstream::JetStreamFeed;
pub use store::StoreFeed;
pub use wire::StreamSettings;

/// A position in the global commit order: `(tx_id, global_position)` on PostgreSQL; on SQLite,
/// where the position already is the commit order, `tx_id == position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Cursor {
    pub tx_id: u64,
    pub position: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor {
        tx_id: 0,
        position: 0,
    };
}

impl From<CommitPosition> for Cursor {
    fn from(commit: CommitPosition) -> Self {
        Cursor {
            tx_id: commit.tx_id,
            position: commit.position,
        }
    }
}

impl From<Cursor> for CommitPosition {
    fn from(cursor: Cursor) -> Self {
        CommitPosition {
            tx_id: cursor.tx_id,
            position: cursor.position,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("event store: {0}")]
    Store(#[from] custody_eventlog::EventLogError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("a message on the stream is not a stored event: {0}")]
    Decode(String),
}

/// How an item is acknowledged once the projector has committed it.
// A JetStream message is large, but an item lives only until its projector commits: not worth
// a box on every event.
#[allow(clippy::large_enum_variant)]
pub enum Acker {
    /// Nothing to acknowledge (the store feed; its position is the projector's stored cursor).
    None,
    /// A JetStream message, acked after the projector's commit.
    JetStream(async_nats::jetstream::Message),
}

/// One event from a feed.
pub struct FeedItem {
    pub event: StoredEvent,
    pub cursor: Cursor,
    pub acker: Acker,
}

impl FeedItem {
    pub async fn ack(self) -> Result<(), FeedError> {
        match self.acker {
            Acker::None => Ok(()),
            Acker::JetStream(message) => message
                .ack()
                .await
                .map_err(|e| FeedError::Nats(e.to_string())),
        }
    }
}

/// A source of committed events in commit order (per aggregate at least; the projector copes
/// with the rest).
#[allow(async_fn_in_trait)]
pub trait EventFeed: Send {
    /// Up to `max` events, waiting at most `wait` for the first one; empty if none came.
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<FeedItem>, FeedError>;
}
