//! The committed tail (issue 11): the events the process's feed readers read last, in commit
//! order, kept once for all of them.
//!
//! Every projector and process manager follows the log from its own cursor, and under load they
//! all stand near its end. Each read the same new events from the store and decoded them: seven
//! projectors and two process managers, nine reads of every event. [`EventLog::tail_committed`]
//! answers from one shared run of the latest events instead, and reads the store only for what
//! the run does not hold.
//!
//! Why it cannot hand out a wrong event:
//! - the run only ever holds what [`EventLog::read_committed`] returned, and that part of the
//!   commit order is final (no event can appear in it later);
//! - it is contiguous: it starts right after a known position, and grows only by a read from its
//!   own last position, so the events after any position inside it are exactly the next ones in
//!   the commit order;
//! - a reader whose position lies outside it (behind its start: a rebuild, a catch-up from far
//!   back) reads the store directly; one ahead of it (another reader went past without it)
//!   starts a new run there;
//! - events are never changed in place by the service; the one writer that does
//!   (`custody keys seal-plaintext`, offline) empties it.
//!
//! Bounded: [`TAIL_EVENTS`] events at most, the oldest dropped first. One reader at a time reads
//! the store for the run (the others wait and then take what it brought), so nine readers at the
//! end of the log make one read.

use std::collections::VecDeque;

use tokio::sync::Mutex;

use crate::commit_order::{CommitPosition, CommittedEvent};
use crate::{EventLog, EventLogError};

/// The most events the run holds: several batches of every reader.
pub const TAIL_EVENTS: usize = 4_096;

/// Events read at least when the run grows: a reader asking for fewer still brings a page the
/// others can share.
const TAIL_PAGE: usize = 500;

#[derive(Debug, Default)]
pub(crate) struct CommittedTail {
    run: Mutex<Run>,
}

#[derive(Debug, Default)]
struct Run {
    /// The position right before the first event held; None before the first read.
    start: Option<CommitPosition>,
    events: VecDeque<CommittedEvent>,
}

impl Run {
    fn end(&self) -> Option<CommitPosition> {
        self.events.back().map(|e| e.commit).or(self.start)
    }

    /// Up to `limit` held events after `after`, if `after` lies inside the run and events follow
    /// it there.
    fn after(&self, after: CommitPosition, limit: usize) -> Option<Vec<CommittedEvent>> {
        let start = self.start?;
        if after < start {
            return None;
        }
        let first = self.events.partition_point(|e| e.commit <= after);
        if first == self.events.len() {
            return None;
        }
        Some(self.events.range(first..).take(limit).cloned().collect())
    }

    fn extend(&mut self, read: &[CommittedEvent]) {
        self.events.extend(read.iter().cloned());
        while self.events.len() > TAIL_EVENTS {
            if let Some(dropped) = self.events.pop_front() {
                self.start = Some(dropped.commit);
            }
        }
    }
}

impl CommittedTail {
    /// Forgets every event held (the store's events were changed in place).
    pub(crate) async fn clear(&self) {
        *self.run.lock().await = Run::default();
    }
}

impl EventLog {
    /// As [`EventLog::read_committed`], for readers that follow the end of the log (the feeds of
    /// projectors and process managers): answered from the run of latest events this process
    /// shares between them when it holds what is asked, else from the store (module docs).
    pub async fn tail_committed(
        &self,
        after: CommitPosition,
        limit: usize,
    ) -> Result<Vec<CommittedEvent>, EventLogError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut run = self.tail().run.lock().await;
        if let Some(held) = run.after(after, limit) {
            return Ok(held);
        }
        match run.end() {
            // At the end of the run (or the first reader): the run grows by this read.
            Some(end) if end == after => {}
            None => run.start = Some(after),
            // Behind the run's start, or past events the run never held.
            Some(end) => {
                if after < run.start.unwrap_or(end) {
                    drop(run);
                    return self.read_committed(after, limit).await;
                }
                *run = Run {
                    start: Some(after),
                    events: VecDeque::new(),
                };
            }
        }
        let read = self.read_committed(after, limit.max(TAIL_PAGE)).await?;
        run.extend(&read);
        Ok(read.into_iter().take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoredEvent;

    fn event(position: i64) -> CommittedEvent {
        CommittedEvent {
            commit: CommitPosition {
                tx_id: position as u64,
                position,
            },
            event: StoredEvent {
                aggregate_type: "Document".into(),
                aggregate_id: format!("D{position}"),
                sequence: 1,
                event_type: "Deposited".into(),
                event_version: "1".into(),
                payload: serde_json::Value::Null,
                metadata: serde_json::Value::Null,
                global_position: position,
            },
        }
    }

    fn at(position: i64) -> CommitPosition {
        event(position).commit
    }

    fn positions(events: &[CommittedEvent]) -> Vec<i64> {
        events.iter().map(|e| e.commit.position).collect()
    }

    #[test]
    fn answers_only_inside_the_run_and_only_what_follows() {
        let mut run = Run {
            start: Some(at(10)),
            ..Run::default()
        };
        run.extend(&[event(11), event(12), event(15)]);
        assert_eq!(positions(&run.after(at(10), 10).unwrap()), [11, 12, 15]);
        assert_eq!(positions(&run.after(at(11), 1).unwrap()), [12]);
        // Between two held events: the next held one is the next in the commit order.
        assert_eq!(positions(&run.after(at(13), 10).unwrap()), [15]);
        assert!(run.after(at(15), 10).is_none(), "nothing after the end");
        assert!(run.after(at(9), 10).is_none(), "behind the start");
        assert_eq!(run.end(), Some(at(15)));
    }

    #[test]
    fn is_bounded_and_moves_its_start_with_what_it_drops() {
        let mut run = Run {
            start: Some(at(0)),
            ..Run::default()
        };
        let many: Vec<CommittedEvent> = (1..=(TAIL_EVENTS as i64 + 3)).map(event).collect();
        run.extend(&many);
        assert_eq!(run.events.len(), TAIL_EVENTS);
        assert_eq!(run.start, Some(at(3)));
        assert!(run.after(at(2), 1).is_none());
        assert_eq!(positions(&run.after(at(3), 1).unwrap()), [4]);
    }
}
