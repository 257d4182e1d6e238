//! Batching (issue 11): the one-row writes of concurrent requests, of one kind, written together
//! as one statement per short batch, each request still getting its own answer.
//!
//! A batch forms by itself, without waiting on a timer: a write queues, and while every writer
//! is busy the queue fills; the next free writer takes what has queued (up to the kind's
//! [`BatchWrite::MAX`]). Under light load a batch is one row, written at once.
//! - Two writes with the same key never share a batch (the later waits for the next), so that
//!   the statement can say for each row whether it was written, and never has to affect a row
//!   twice.
//! - A batch is sorted by key, so that two batches on PostgreSQL take their row locks in the
//!   same order.
//! - If a batch statement fails (a deadlock between two batches, a busy SQLite, a lost
//!   connection), each of its writes runs alone, as without batching, and gets its own answer.
//! - The queue is bounded: a write beyond it waits to queue, so its memory stays bounded
//!   whatever arrives.
//!
//! Used by the group commit of events ([`crate::group_commit`]), the replay window
//! (`seen_requests`, [`crate::platform`]) and the persons' data keys
//! ([`crate::personal`]).

use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// One kind of write that can be batched.
pub(crate) trait BatchWrite: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Answer: Send + 'static;
    type Key: Ord + Hash + Send;
    /// The most items one statement writes.
    const MAX: usize;
    /// What two items of one batch may not share.
    fn key(item: &Self::Item) -> Self::Key;
    /// Writes `items` (distinct keys, in key order) in one statement: an answer per item, in
    /// the same order.
    fn write(
        &self,
        items: &[Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send;
    /// Writes one item alone, after its batch's statement failed.
    fn write_one(&self, item: &Self::Item) -> impl Future<Output = Self::Answer> + Send;
    /// Whether an answer says its item was written (counted in [`BatchStats::written`]).
    fn wrote(answer: &Self::Answer) -> bool;
}

/// What a batcher has done, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batch statements that succeeded.
    pub batches: u64,
    /// Items they answered.
    pub items: u64,
    /// Of those, the items written (a request id that was fresh, an event appended).
    pub written: u64,
    /// The most items one batch held.
    pub largest: usize,
    /// Items written one by one, not counted above, because their batch statement failed.
    pub singles_after_failure: u64,
    /// Items queued now and not yet taken into a batch (the first of the next batch, already
    /// taken while it waits for a writer, not counted).
    pub queued: usize,
}

#[derive(Debug, Default)]
struct Counts {
    batches: AtomicU64,
    items: AtomicU64,
    written: AtomicU64,
    largest: AtomicUsize,
    singles_after_failure: AtomicU64,
}

struct Queued<B: BatchWrite> {
    item: B::Item,
    reply: oneshot::Sender<B::Answer>,
}

/// The queue in front of one kind's writers. Cheap to clone.
pub(crate) struct Batcher<B: BatchWrite> {
    queue: mpsc::Sender<Queued<B>>,
    writers: Arc<Semaphore>,
    width: usize,
    counts: Arc<Counts>,
}

impl<B: BatchWrite> Clone for Batcher<B> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            writers: self.writers.clone(),
            width: self.width,
            counts: self.counts.clone(),
        }
    }
}

impl<B: BatchWrite> std::fmt::Debug for Batcher<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("width", &self.width)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// The writer has stopped: its task ended, or it dropped a write (a panic).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopped;

/// While held, no batch starts: writes queue (up to the queue's bound). Dropping it lets
/// them go, together.
pub struct BatchHold {
    _permits: OwnedSemaphorePermit,
}

impl<B: BatchWrite> Batcher<B> {
    /// Starts the batching task, with `width` batches in flight at most; the task ends when
    /// the last handle is dropped.
    pub(crate) fn start(writer: B, width: usize) -> Batcher<B> {
        let width = width.max(1);
        let (queue, receiver) = mpsc::channel(4 * B::MAX);
        let writers = Arc::new(Semaphore::new(width));
        let counts = Arc::new(Counts::default());
        tokio::spawn(batch_loop(
            Arc::new(writer),
            receiver,
            writers.clone(),
            counts.clone(),
        ));
        Batcher {
            queue,
            writers,
            width,
            counts,
        }
    }

    /// Writes `item` with whatever else is queued; its own answer.
    pub(crate) async fn write(&self, item: B::Item) -> Result<B::Answer, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { item, reply })
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }

    /// Holds every batch back until the hold is dropped (a test forms one batch with it).
    pub(crate) async fn hold(&self) -> BatchHold {
        let permits = self
            .writers
            .clone()
            .acquire_many_owned(self.width as u32)
            .await
            .expect("the writers' semaphore is never closed");
        BatchHold { _permits: permits }
    }

    /// Writes queued and not yet taken into a batch.
    pub(crate) fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub(crate) fn stats(&self) -> BatchStats {
        BatchStats {
            batches: self.counts.batches.load(Ordering::Relaxed),
            items: self.counts.items.load(Ordering::Relaxed),
            written: self.counts.written.load(Ordering::Relaxed),
            largest: self.counts.largest.load(Ordering::Relaxed),
            singles_after_failure: self.counts.singles_after_failure.load(Ordering::Relaxed),
            queued: self.queued(),
        }
    }
}

async fn batch_loop<B: BatchWrite>(
    writer: Arc<B>,
    mut receiver: mpsc::Receiver<Queued<B>>,
    writers: Arc<Semaphore>,
    counts: Arc<Counts>,
) {
    // Writes deferred from a batch that already held their key.
    let mut waiting: VecDeque<Queued<B>> = VecDeque::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv().await {
                Some(queued) => waiting.push_back(queued),
                None => return,
            }
        }
        // Waiting for a writer is what lets a batch form.
        let Ok(permit) = writers.clone().acquire_owned().await else {
            return;
        };
        while waiting.len() < B::MAX {
            match receiver.try_recv() {
                Ok(queued) => waiting.push_back(queued),
                Err(_) => break,
            }
        }
        let mut batch = Vec::with_capacity(waiting.len().min(B::MAX));
        let mut later = VecDeque::new();
        {
            let mut keys = HashSet::new();
            for queued in waiting.drain(..) {
                if batch.len() < B::MAX && keys.insert(B::key(&queued.item)) {
                    batch.push(queued);
                } else {
                    later.push_back(queued);
                }
            }
        }
        waiting = later;
        let writer = writer.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            write_batch(&*writer, batch, &counts).await;
            drop(permit);
        });
    }
}

async fn write_batch<B: BatchWrite>(writer: &B, mut batch: Vec<Queued<B>>, counts: &Counts) {
    batch.sort_by(|a, b| B::key(&a.item).cmp(&B::key(&b.item)));
    let (items, replies): (Vec<B::Item>, Vec<oneshot::Sender<B::Answer>>) =
        batch.into_iter().map(|q| (q.item, q.reply)).unzip();
    match writer.write(&items).await {
        Ok(answers) if answers.len() == items.len() => {
            counts.batches.fetch_add(1, Ordering::Relaxed);
            counts
                .items
                .fetch_add(items.len() as u64, Ordering::Relaxed);
            counts.largest.fetch_max(items.len(), Ordering::Relaxed);
            for (reply, answer) in replies.into_iter().zip(answers) {
                if B::wrote(&answer) {
                    counts.written.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(answer);
            }
        }
        outcome => {
            if let Err(error) = outcome {
                tracing::debug!(%error, items = items.len(), "batch statement failed; writing one by one");
            }
            for (item, reply) in items.iter().zip(replies) {
                let answer = writer.write_one(item).await;
                if B::wrote(&answer) {
                    counts.singles_after_failure.fetch_add(1, Ordering::Relaxed);
                }
                let _ = reply.send(answer);
            }
        }
    }
}

/// The rows a batch of `n` items writes: the next power of two, the last rows repeating an
/// item, so that a kind of write has a few statement texts (each stays prepared on every
/// connection) instead of one per batch size. Only for statements where a repeated row changes
/// nothing (`ON CONFLICT DO NOTHING`, `IN (…)`).
pub(crate) fn padded(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// `($1, $2, …), ($k, …), …`: `rows` rows of `columns` parameters, numbered in order (which
/// SQLite reads as numbered parameters too).
pub(crate) fn values_rows(columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 6);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(row * columns + column + 1).to_string());
        }
        sql.push(')');
    }
    sql
}

/// The first column of every row a batch statement returned (`RETURNING reqid`, `RETURNING
/// person`): the keys it wrote.
pub(crate) fn returned_keys(rows: &[sqlx::any::AnyRow]) -> Result<HashSet<String>, sqlx::Error> {
    use sqlx::Row as _;
    rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
}

/// The item of each of `rows` padded rows: every item once, in order, then the first again.
pub(crate) fn padded_items<T>(items: &[T]) -> impl Iterator<Item = &T> {
    let rest = padded(items.len()) - items.len();
    items
        .iter()
        .chain(items.first().into_iter().cycle().take(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_padded_to_a_power_of_two_with_its_first_item() {
        assert_eq!(padded(1), 1);
        assert_eq!(padded(3), 4);
        assert_eq!(padded(64), 64);
        assert_eq!(padded(65), 128);
        let items = ["a", "b", "c"];
        let rows: Vec<&str> = padded_items(&items).copied().collect();
        assert_eq!(rows, ["a", "b", "c", "a"]);
        assert_eq!(values_rows(2, 2), "($1, $2), ($3, $4)");
    }
}
