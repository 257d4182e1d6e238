//! The projections of one instance applied together from one feed (issue 11).
//!
//! Run one by one, every projector read each event from the feed, decoded it, opened its
//! personal fields and applied it in a transaction of its own: nine reads, seven openings and
//! seven commits of every event. A [`ProjectorGroup`] reads a batch once, opens it once, and
//! applies it to every projection of the group in one transaction (one fence check, one
//! commit), then acks it. Each projection still keeps its own positions and cursor, and skips
//! what it has applied, exactly as it does alone ([`Projector`]); the group's feed starts at
//! the lowest cursor of its projections.
//!
//! One projection must not stop the others: when the shared transaction fails, the batch is
//! applied again one projection at a time, each in its own transaction; a projection that
//! fails on its own then leaves the group (the caller runs it alone, retrying, as before the
//! group) and the rest go on.

use std::time::Duration;

use custody_eventlog::{EventLogError, Lease, StoredEvent};
use sqlx::{Any, Transaction};
use tokio::sync::watch;

use crate::feed::{Cursor, EventFeed, FeedItem};
use crate::views::EventRef;
use crate::{ProjectionError, Projector};

/// Projectors applied together from one feed.
pub struct ProjectorGroup {
    projectors: Vec<Projector>,
}

/// Why a group stopped running.
pub enum GroupStop {
    /// Shutdown, or the lease was lost (or a batch was fenced off).
    Stopped,
    /// These projectors failed on their own and left the group; the others go on.
    Detached(Vec<Projector>),
}

impl ProjectorGroup {
    pub fn new(projectors: Vec<Projector>) -> Self {
        ProjectorGroup { projectors }
    }

    pub fn projectors(&self) -> &[Projector] {
        &self.projectors
    }

    pub fn is_empty(&self) -> bool {
        self.projectors.is_empty()
    }

    /// Where the group's feed starts: the lowest stored cursor of its projections.
    pub async fn start(&self) -> Result<Cursor, ProjectionError> {
        let mut lowest: Option<Cursor> = None;
        for projector in &self.projectors {
            let cursor = projector.status().await?.cursor;
            lowest = Some(lowest.map_or(cursor, |l| l.min(cursor)));
        }
        Ok(lowest.unwrap_or(Cursor::START))
    }

    /// Consumes `feed` while this instance holds `lease` with `token`, every batch fenced by
    /// it. Returns at shutdown or when the lease is lost ([`GroupStop::Stopped`]), or with the
    /// projectors that failed on their own, which have left the group
    /// ([`GroupStop::Detached`]): the caller runs them alone and calls this again for the rest,
    /// with the same feed.
    pub async fn run_leased<F: EventFeed>(
        &mut self,
        feed: &mut F,
        mut shutdown: watch::Receiver<bool>,
        lease: &mut Lease,
        token: i64,
    ) -> GroupStop {
        let fence_name = lease.name().to_string();
        let fence = (fence_name.as_str(), token);
        let mut backoff = Duration::from_millis(50);
        let lost = lease.lost(token);
        tokio::pin!(lost);
        while !*shutdown.borrow() {
            let items = tokio::select! {
                () = &mut lost => return GroupStop::Stopped,
                batch = feed.next(500, Duration::from_millis(500)) => match batch {
                    Ok(items) => items,
                    Err(error) => {
                        tracing::warn!(%error, "projectors' feed failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
                _ = shutdown.changed() => return GroupStop::Stopped,
            };
            if items.is_empty() {
                continue;
            }
            loop {
                match self.commit(&items, fence).await {
                    Ok(failed) if failed.is_empty() => break,
                    Ok(failed) => {
                        // The batch is applied by every projection still in the group; the
                        // others go alone from their own cursors.
                        let detached = self.detach(&failed);
                        ack(items).await;
                        return GroupStop::Detached(detached);
                    }
                    Err(ProjectionError::Store(EventLogError::Fenced { lease, token })) => {
                        tracing::warn!(
                            lease,
                            token,
                            "another instance took the projectors' lease; stopping"
                        );
                        return GroupStop::Stopped;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "projectors' batch failed; retrying it");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {},
                            _ = shutdown.changed() => return GroupStop::Stopped,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            backoff = Duration::from_millis(50);
            ack(items).await;
        }
        GroupStop::Stopped
    }

    /// Applies a batch to every projection of the group, in one transaction; if that fails,
    /// to each in a transaction of its own. The indexes of the projectors that failed alone
    /// (their error is logged); an error when nothing could be applied (the store is down, the
    /// lease fenced off).
    pub async fn commit(
        &self,
        items: &[FeedItem],
        fence: (&str, i64),
    ) -> Result<Vec<usize>, ProjectionError> {
        if items.is_empty() || self.projectors.is_empty() {
            return Ok(Vec::new());
        }
        let log = self.projectors[0].log();
        let mut opened: Vec<StoredEvent> = items.iter().map(|item| item.event.clone()).collect();
        log.open_personal_data(&mut opened).await?;
        let events: Vec<(Cursor, EventRef)> = items
            .iter()
            .zip(&opened)
            .map(|(item, event)| (item.cursor, EventRef::from(event)))
            .collect();
        // Every gate, in the group's fixed order: a rebuild's swap waits for this batch.
        let mut gates = Vec::with_capacity(self.projectors.len());
        for projector in &self.projectors {
            gates.push(projector.gate().lock().await);
        }
        match self.commit_together(&events, fence).await {
            Ok(recorded) => {
                for (projector, recorded) in self.projectors.iter().zip(recorded) {
                    projector.record_lag(recorded);
                }
                return Ok(Vec::new());
            }
            Err(error @ ProjectionError::Store(EventLogError::Fenced { .. })) => return Err(error),
            Err(error) => {
                tracing::debug!(%error, "the projectors' shared batch failed; applying it one by one");
            }
        }
        let mut failed = Vec::new();
        let mut errors = Vec::new();
        for (index, projector) in self.projectors.iter().enumerate() {
            match projector.apply_live(&events, Some(fence)).await {
                Ok(recorded) => projector.record_lag(recorded),
                Err(error @ ProjectionError::Store(EventLogError::Fenced { .. })) => {
                    return Err(error)
                }
                Err(error) => {
                    tracing::warn!(projection = projector.projection().name(), %error, "projector batch failed");
                    failed.push(index);
                    errors.push(error);
                }
            }
        }
        drop(gates);
        // Failing all alike is the store's failure, not one projection's: retry the batch.
        if failed.len() == self.projectors.len() {
            if let Some(error) = errors.into_iter().next() {
                return Err(error);
            }
        }
        Ok(failed)
    }

    async fn commit_together(
        &self,
        events: &[(Cursor, EventRef<'_>)],
        fence: (&str, i64),
    ) -> Result<Vec<Vec<i64>>, ProjectionError> {
        let mut tx: Transaction<'static, Any> = self.projectors[0].pool().begin().await?;
        // On SQLite the fence is a write, so the transaction holds the write lock from here.
        custody_eventlog::fence(&mut tx, fence.0, fence.1).await?;
        let mut recorded = Vec::with_capacity(self.projectors.len());
        for projector in &self.projectors {
            let (_, lags) = projector.apply_live_on(&mut tx, events).await?;
            recorded.push(lags);
        }
        tx.commit().await?;
        Ok(recorded)
    }

    fn detach(&mut self, failed: &[usize]) -> Vec<Projector> {
        let mut detached = Vec::with_capacity(failed.len());
        for &index in failed.iter().rev() {
            detached.push(self.projectors.remove(index));
        }
        detached
    }
}

async fn ack(items: Vec<FeedItem>) {
    for item in items {
        if let Err(error) = item.ack().await {
            // Unacked messages come again; the views skip what they have.
            tracing::warn!(%error, "ack failed");
        }
    }
}
