//! Hot aggregates (issue 11): the aggregates this process last loaded or appended to, kept in
//! memory with the sequence and chain hash they end at, so that a command on a document that
//! goes in and out of its cabinet does not replay its whole history from the store.
//!
//! Memory is only ever a guess that the append checks. A command decided on a held aggregate
//! appends at the held sequence + 1, which the store's unique index refuses when anyone (another
//! instance, another path) appended since: the entry is dropped and the command decided again on
//! a fresh load. A command *refused* on a held aggregate is never answered from memory either:
//! a refusal appends nothing, so nothing would check it, and the command is decided again on a
//! fresh load before it is refused. Look-ups that decide nothing by themselves (the custody
//! policy's holder, a lend's approval) always read the store.
//!
//! Bounded: at most [`HOT_AGGREGATES`] entries (least recently used go first), each used for at
//! most [`HOT_AGGREGATE_TTL`] after it was loaded or appended to, the time for which a data key is
//! kept in memory too, so that an aggregate naming a person erased on another instance leaves
//! memory as soon as that person's key does.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cqrs_es::Aggregate;
use custody_eventlog::ChainContext;
use hashlink::LruCache;

/// How many aggregates are held: a busy instance's working set of documents and persons
/// between two of their operations, bounded because the ids are outside input.
pub const HOT_AGGREGATES: usize = 8_192;

/// How long an entry is used after it was loaded or appended to.
pub const HOT_AGGREGATE_TTL: Duration = custody_eventlog::personal::KEY_CACHE_TTL;

struct Entry {
    aggregate: Box<dyn Any + Send + Sync>,
    sequence: usize,
    last_hash: String,
    at: Instant,
}

/// What the hot aggregates did since this process started (`GET /metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HotStats {
    /// Commands whose first attempt was decided on a held aggregate.
    pub hits: u64,
    /// Commands that loaded their aggregate from the store (none held, or too old).
    pub misses: u64,
    /// Held aggregates found behind the store by the append, or re-checked after a refusal:
    /// decided again on a fresh load.
    pub stale: u64,
    pub entries: usize,
    pub capacity: usize,
}

pub(crate) struct HotAggregates {
    entries: Mutex<LruCache<(&'static str, String), Entry>>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
}

impl HotAggregates {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        HotAggregates {
            entries: Mutex::new(LruCache::new(capacity.max(1))),
            capacity,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<(&'static str, String), Entry>> {
        // A panic elsewhere while holding the lock leaves only a cache behind: still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The held aggregate `id`, if there is one young enough; counted as a hit or a miss.
    pub(crate) fn get<A>(&self, id: &str) -> Option<ChainContext<A>>
    where
        A: Aggregate + Clone + 'static,
    {
        let found = if self.capacity == 0 {
            None
        } else {
            let mut entries = self.entries();
            let key = (A::TYPE, id.to_string());
            match entries.get(&key) {
                Some(entry) if entry.at.elapsed() < self.ttl => entry
                    .aggregate
                    .downcast_ref::<A>()
                    .map(|aggregate| ChainContext {
                        aggregate_id: id.to_string(),
                        aggregate: aggregate.clone(),
                        sequence: entry.sequence,
                        last_hash: entry.last_hash.clone(),
                    }),
                Some(_) => {
                    entries.remove(&key);
                    None
                }
                None => None,
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Holds `aggregate` as it is at `sequence`, unless a later state of it is held already
    /// (a slower load finishing after another command's append).
    pub(crate) fn put<A>(&self, id: &str, aggregate: &A, sequence: usize, last_hash: &str)
    where
        A: Aggregate + Clone + 'static,
    {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        let key = (A::TYPE, id.to_string());
        if entries
            .get(&key)
            .is_some_and(|held| held.sequence > sequence)
        {
            return;
        }
        entries.insert(
            key,
            Entry {
                aggregate: Box::new(aggregate.clone()),
                sequence,
                last_hash: last_hash.to_string(),
                at: Instant::now(),
            },
        );
    }

    /// Drops the held aggregate: the store moved on without us, or its state is unknown.
    pub(crate) fn forget(&self, aggregate_type: &'static str, id: &str) {
        if self.capacity == 0 {
            return;
        }
        self.entries().remove(&(aggregate_type, id.to_string()));
    }

    /// As [`HotAggregates::forget`], counting a held aggregate that turned out behind.
    pub(crate) fn stale(&self, aggregate_type: &'static str, id: &str) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        self.forget(aggregate_type, id);
    }

    pub(crate) fn stats(&self) -> HotStats {
        HotStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            entries: if self.capacity == 0 {
                0
            } else {
                self.entries().len()
            },
            capacity: self.capacity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_domain::document::Document;
    use custody_domain::person::Person;

    fn document(sequence: usize) -> Document {
        Document {
            planned_return: chrono::NaiveDate::from_ymd_opt(2026, 1, sequence as u32),
            ..Document::default()
        }
    }

    #[test]
    fn holds_the_latest_state_per_type_and_id() {
        let hot = HotAggregates::new(4, Duration::from_secs(60));
        assert!(hot.get::<Document>("D1").is_none());
        hot.put("D1", &document(2), 2, "h2");
        // A slower load of an older state does not replace a newer one.
        hot.put("D1", &document(1), 1, "h1");
        let held = hot.get::<Document>("D1").expect("held");
        assert_eq!((held.sequence, held.last_hash.as_str()), (2, "h2"));
        assert_eq!(held.aggregate, document(2));
        // Same id, other type: another entry.
        assert!(hot.get::<Person>("D1").is_none());
        hot.stale(Document::TYPE, "D1");
        assert!(hot.get::<Document>("D1").is_none());
        let stats = hot.stats();
        assert_eq!((stats.hits, stats.misses, stats.stale), (1, 3, 1));
    }

    #[test]
    fn is_bounded_in_count_and_age() {
        let hot = HotAggregates::new(2, Duration::from_secs(60));
        for (i, id) in ["A", "B", "C"].into_iter().enumerate() {
            hot.put(id, &document(1), i + 1, "h");
        }
        assert_eq!(hot.stats().entries, 2);
        assert!(
            hot.get::<Document>("A").is_none(),
            "least recently used went first"
        );
        let old = HotAggregates::new(2, Duration::ZERO);
        old.put("A", &document(1), 1, "h");
        assert!(old.get::<Document>("A").is_none(), "too old to be used");
        assert_eq!(old.stats().entries, 0);
        let off = HotAggregates::new(0, Duration::from_secs(60));
        off.put("A", &document(1), 1, "h");
        assert!(off.get::<Document>("A").is_none());
    }
}
