//! The platform's clock. Every time rule reads it, so tests can set it.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, FixedOffset, Utc};
use custody_domain::values::china_standard_time;

pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in China Standard Time.
    fn now(&self) -> DateTime<FixedOffset>;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<FixedOffset> {
        Utc::now().with_timezone(&china_standard_time())
    }
}

/// A clock that stands still until told otherwise. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<FixedOffset>>>,
}

impl ManualClock {
    pub fn at(now: DateTime<FixedOffset>) -> Self {
        ManualClock {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// What the clock says (also through [`Clock::now`]).
    pub fn now(&self) -> DateTime<FixedOffset> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set(&self, now: DateTime<FixedOffset>) {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = now;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<FixedOffset> {
        *self
            .now
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
