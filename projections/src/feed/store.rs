//! The feed straight from the event store: the commit-ordered read, polled (through the tail
//! the process's readers share, `EventLog::tail_committed`).

use std::time::Duration;

use custody_eventlog::EventLog;
use tokio::time::Instant;

use super::{Acker, Cursor, EventFeed, FeedError, FeedItem};

/// Polls [`EventLog::read_committed`] from a cursor. Used by the embedded platform, by rebuilds,
/// and to fill gaps the JetStream feed leaves.
#[derive(Debug, Clone)]
pub struct StoreFeed {
    log: EventLog,
    cursor: Cursor,
    poll: Duration,
}

impl StoreFeed {
    /// A feed of the events committed after `after` (the projector's stored cursor).
    pub fn new(log: EventLog, after: Cursor) -> Self {
        StoreFeed {
            log,
            cursor: after,
            poll: Duration::from_millis(50),
        }
    }

    /// How often to look again while waiting for new events (default 50 ms).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll.max(Duration::from_millis(1));
        self
    }

    /// The position after the last event handed out.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }
}

impl EventFeed for StoreFeed {
    async fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<FeedItem>, FeedError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let events = self.log.tail_committed(self.cursor.into(), max).await?;
            if let Some(last) = events.last() {
                self.cursor = last.commit.into();
                return Ok(events
                    .into_iter()
                    .map(|committed| FeedItem {
                        cursor: committed.commit.into(),
                        event: committed.event,
                        acker: Acker::None,
                    })
                    .collect());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(self.poll.min(deadline - now)).await;
        }
    }
}
