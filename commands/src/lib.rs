//! Application services: run domain commands against the event store.
//!
//! Every command that answers a reported operation carries an idempotency key (its business
//! serial): the same key never yields a second event, also when sent concurrently or after a
//! restart, and the second caller learns it was a duplicate. Optimistic-concurrency conflicts are
//! retried a bounded number of times.

mod clock;
mod error;
mod hot;
mod service;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CommandError, PersistenceFailure};
pub use hot::{HotStats, HOT_AGGREGATES, HOT_AGGREGATE_TTL};
pub use service::{
    CommandObserver, CommandResult, Commands, Guarded, Loaded, Outcome, RetryPolicy,
};
