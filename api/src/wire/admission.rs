//! Admission control (SPEC §5, §2.6.4.1.6): a token bucket per sender and one for the whole
//! service. A request waits for a token at most `max_wait` (200 ms); if none would come by
//! then it is refused at once with 429, without waiting.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates of the two buckets.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionConfig {
    pub per_sender_rate: f64,
    pub per_sender_burst: f64,
    pub global_rate: f64,
    pub global_burst: f64,
    pub max_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            per_sender_rate: 50.0,
            per_sender_burst: 100.0,
            global_rate: 5_000.0,
            global_burst: 5_000.0,
            max_wait: Duration::from_millis(200),
        }
    }
}

/// A token bucket that lends ahead: a request may take a token that will only exist within
/// `max_wait`, and waits for it; the balance goes negative meanwhile, so later requests queue
/// behind it fairly.
struct Bucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token: how long to wait for it, or None if longer than `max_wait`.
    fn reserve(&self, max_wait: Duration) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        let wait = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.rate)
        };
        if wait > max_wait {
            *state = (tokens, now);
            return None;
        }
        *state = (tokens - 1.0, now);
        Some(wait)
    }

    fn refund(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = (state.0 + 1.0).min(self.burst);
    }
}

pub struct Admission {
    config: AdmissionConfig,
    global: Bucket,
    senders: Mutex<HashMap<String, std::sync::Arc<Bucket>>>,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            global: Bucket::new(config.global_rate, config.global_burst),
            senders: Mutex::new(HashMap::new()),
            config,
        }
    }

    /// Waits for both tokens (at most `max_wait`), or refuses at once.
    pub async fn admit(&self, sender: &str) -> bool {
        let bucket = {
            let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
            senders
                .entry(sender.to_string())
                .or_insert_with(|| {
                    std::sync::Arc::new(Bucket::new(
                        self.config.per_sender_rate,
                        self.config.per_sender_burst,
                    ))
                })
                .clone()
        };
        let Some(sender_wait) = bucket.reserve(self.config.max_wait) else {
            return false;
        };
        let Some(global_wait) = self.global.reserve(self.config.max_wait) else {
            bucket.refund();
            return false;
        };
        let wait = sender_wait.max(global_wait);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_lends_no_further_than_the_wait_allows() {
        let bucket = Bucket::new(10.0, 2.0);
        let max_wait = Duration::from_millis(200);
        assert_eq!(bucket.reserve(max_wait), Some(Duration::ZERO));
        assert_eq!(bucket.reserve(max_wait), Some(Duration::ZERO));
        // Two more fit within 200 ms at 10/s (100 ms and 200 ms away); the next does not.
        assert!(bucket.reserve(max_wait).is_some());
        assert!(bucket.reserve(max_wait).is_some());
        assert_eq!(bucket.reserve(max_wait), None);
    }

    #[tokio::test]
    async fn a_sender_over_its_rate_is_refused_while_others_pass() {
        let admission = Admission::new(AdmissionConfig {
            per_sender_rate: 5.0,
            per_sender_burst: 5.0,
            ..AdmissionConfig::default()
        });
        // Twenty at once: five from the burst, one more within 200 ms at 5/s, the rest refused.
        let burst = futures::future::join_all((0..20).map(|_| admission.admit("noisy"))).await;
        let admitted = burst.iter().filter(|admitted| **admitted).count();
        assert_eq!(admitted, 6, "admitted {admitted}");
        assert!(admission.admit("quiet").await);
    }
}
