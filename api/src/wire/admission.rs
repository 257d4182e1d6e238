//! Admission control (SPEC §5, §2.6.4.1.6; docs/security.md).
//!
//! Two stages, so that a forger cannot spend a genuine sender's tokens by naming its `ei`:
//! - before the signature is checked, a request takes a token from its *source address's*
//!   pre-authentication bucket; a request that then authenticates gives it back, so only the
//!   source's failures (bad signatures, unknown senders, stale times) use it up. That bounds the
//!   verification work one source can cause while it fails to authenticate;
//! - once the signature verified, the request takes a token from its sender's own bucket and from
//!   the one for the whole service: neither is ever charged for an unauthenticated request.
//!
//! A request waits for a token at most `max_wait` (200 ms); if none would come by then it is
//! refused at once with 429, without waiting. Every map keyed by outside input is bounded: the
//! per-source map holds at most `max_sources` addresses (idle ones are evicted first), and the
//! per-sender map holds only senders that authenticated.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rates of the buckets.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionConfig {
    pub per_sender_rate: f64,
    pub per_sender_burst: f64,
    pub global_rate: f64,
    pub global_burst: f64,
    /// Unauthenticated requests a second per source address (refunded when they authenticate).
    pub per_source_rate: f64,
    pub per_source_burst: f64,
    /// Source addresses tracked at once.
    pub max_sources: usize,
    pub max_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            per_sender_rate: 50.0,
            per_sender_burst: 100.0,
            global_rate: 5_000.0,
            global_burst: 5_000.0,
            per_source_rate: 200.0,
            per_source_burst: 400.0,
            max_sources: 65_536,
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
    /// The share of the rate and burst this instance takes (the global bucket's is 1 / the live
    /// instance count, docs/scaling.md), as f64 bits.
    share: AtomicU64,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Bucket {
        Bucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
            share: AtomicU64::new(1.0f64.to_bits()),
        }
    }

    fn share(&self) -> f64 {
        f64::from_bits(self.share.load(Ordering::Relaxed))
    }

    /// Takes a token: how long to wait for it, or None if longer than `max_wait`.
    fn reserve(&self, max_wait: Duration) -> Option<Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let (tokens, last) = *state;
        let share = self.share();
        // The burst is never below one token, so a small share still admits.
        let (rate, burst) = (self.rate * share, (self.burst * share).max(1.0));
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate).min(burst);
        let wait = if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / rate)
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

    /// Full again: nothing is owed, so forgetting it changes nothing.
    fn idle(&self, now: Instant) -> bool {
        let (tokens, last) = *self.state.lock().unwrap_or_else(|p| p.into_inner());
        tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate >= self.burst
    }

    fn last_used(&self) -> Instant {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Buckets by key, at most `capacity` of them: when full, idle buckets are forgotten, else the
/// one used longest ago.
struct Buckets<K> {
    rate: f64,
    burst: f64,
    capacity: usize,
    map: Mutex<HashMap<K, Arc<Bucket>>>,
}

impl<K: Eq + Hash + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64, capacity: usize) -> Self {
        Buckets {
            rate,
            burst,
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &K) -> Arc<Bucket> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = map.get(key) {
            return bucket.clone();
        }
        if map.len() >= self.capacity {
            let now = Instant::now();
            map.retain(|_, bucket| !bucket.idle(now));
            if map.len() >= self.capacity {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, bucket)| bucket.last_used())
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let bucket = Arc::new(Bucket::new(self.rate, self.burst));
        map.insert(key.clone(), bucket.clone());
        bucket
    }

    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A pre-authentication token taken for a source: given back with [`Admission::authenticated`].
pub struct Pending {
    bucket: Arc<Bucket>,
    /// How long the request waited for it (zero when a token was there).
    pub waited: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source address failed to authenticate too often.
    Source,
    /// Its sender is over its own rate.
    Sender,
    /// The service as a whole is at its rate.
    Global,
}

/// The two stages a request is admitted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before the signature is checked: the source address's bucket.
    Source,
    /// Once it verified: the sender's bucket and the service's.
    Authenticated,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Source, Stage::Authenticated];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Authenticated => "authenticated",
        }
    }
}

impl Refused {
    pub const ALL: [Refused; 3] = [Refused::Source, Refused::Sender, Refused::Global];

    /// Which bucket refused (the metric label).
    pub fn bucket(self) -> &'static str {
        match self {
            Refused::Source => "source",
            Refused::Sender => "sender",
            Refused::Global => "global",
        }
    }
}

pub struct Admission {
    config: AdmissionConfig,
    global: Bucket,
    sources: Buckets<IpAddr>,
    senders: Buckets<String>,
}

impl Admission {
    pub fn new(config: AdmissionConfig) -> Admission {
        Admission {
            global: Bucket::new(config.global_rate, config.global_burst),
            sources: Buckets::new(
                config.per_source_rate,
                config.per_source_burst,
                config.max_sources,
            ),
            // Only authenticated senders are keyed, so the registry bounds this map; the
            // capacity is a second guard.
            senders: Buckets::new(
                config.per_sender_rate,
                config.per_sender_burst,
                config.max_sources,
            ),
            config,
        }
    }

    /// `instances` live instances share the global rate (docs/scaling.md): this one admits
    /// `global_rate / instances`, with the burst divided alike.
    pub fn share_with(&self, instances: usize) {
        let share = 1.0 / instances.max(1) as f64;
        self.global.share.store(share.to_bits(), Ordering::Relaxed);
    }

    /// The global rate this instance admits now.
    pub fn global_rate_here(&self) -> f64 {
        self.global.rate * self.global.share()
    }

    /// Before anything is verified: a token of the source's pre-authentication bucket.
    pub async fn unauthenticated(&self, source: IpAddr) -> Result<Pending, Refused> {
        let bucket = self.sources.get(&source);
        let wait = bucket
            .reserve(self.config.max_wait)
            .ok_or(Refused::Source)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(Pending {
            bucket,
            waited: wait,
        })
    }

    /// Once the signature verified: the source's token goes back, and the sender's own bucket
    /// and the service's are charged (waiting at most `max_wait`, or refused at once). Answers
    /// how long the request waited for them.
    pub async fn authenticated(&self, pending: Pending, sender: &str) -> Result<Duration, Refused> {
        pending.bucket.refund();
        let bucket = self.senders.get(&sender.to_string());
        let sender_wait = bucket
            .reserve(self.config.max_wait)
            .ok_or(Refused::Sender)?;
        let Some(global_wait) = self.global.reserve(self.config.max_wait) else {
            bucket.refund();
            return Err(Refused::Global);
        };
        let wait = sender_wait.max(global_wait);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }

    /// Source addresses tracked now (bounded by `max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Both stages for a request that authenticates (tests, and callers with no source).
    pub async fn admit(&self, source: IpAddr, sender: &str) -> bool {
        match self.unauthenticated(source).await {
            Ok(pending) => self.authenticated(pending, sender).await.is_ok(),
            Err(_) => false,
        }
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
        let here = IpAddr::from([127, 0, 0, 1]);
        let burst =
            futures::future::join_all((0..20).map(|_| admission.admit(here, "noisy"))).await;
        let admitted = burst.iter().filter(|admitted| **admitted).count();
        assert_eq!(admitted, 6, "admitted {admitted}");
        assert!(admission.admit(here, "quiet").await);
    }

    #[tokio::test]
    async fn failures_of_one_source_never_charge_a_sender_or_the_service() {
        let admission = Admission::new(AdmissionConfig {
            per_source_rate: 1.0,
            per_source_burst: 3.0,
            per_sender_rate: 1.0,
            per_sender_burst: 2.0,
            global_rate: 1.0,
            global_burst: 2.0,
            ..AdmissionConfig::default()
        });
        let forger = IpAddr::from([127, 0, 0, 2]);
        let genuine = IpAddr::from([127, 0, 0, 1]);
        // The forger fails to authenticate: its pending tokens are never given back.
        let mut taken = 0;
        for _ in 0..10 {
            if let Ok(pending) = admission.unauthenticated(forger).await {
                drop(pending);
                taken += 1;
            }
        }
        assert_eq!(taken, 3, "the source's burst, then refused");
        assert_eq!(
            admission.unauthenticated(forger).await.err(),
            Some(Refused::Source)
        );
        // The genuine sender, from its own address, has its whole rate and the service's.
        assert!(admission.admit(genuine, "CAB-1").await);
        assert!(admission.admit(genuine, "CAB-1").await);
    }

    #[tokio::test]
    async fn a_source_that_authenticates_gets_its_token_back() {
        let admission = Admission::new(AdmissionConfig {
            per_source_rate: 0.001,
            per_source_burst: 1.0,
            ..AdmissionConfig::default()
        });
        let here = IpAddr::from([10, 0, 0, 1]);
        for _ in 0..50 {
            assert!(admission.admit(here, "CAB-1").await);
        }
    }

    // Paused time: the sleeps of the waits pass at once, the buckets' clock hardly moves.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_for_a_token_says_how_long() {
        let admission = Admission::new(AdmissionConfig {
            per_sender_rate: 0.01,
            per_sender_burst: 1.0,
            max_wait: Duration::from_secs(250),
            ..AdmissionConfig::default()
        });
        let here = IpAddr::from([10, 0, 0, 2]);
        let mut waits = Vec::new();
        for _ in 0..3 {
            let pending = admission.unauthenticated(here).await.expect("source");
            assert_eq!(pending.waited, Duration::ZERO);
            waits.push(admission.authenticated(pending, "CAB-1").await);
        }
        // The burst's token, then one lent 100 s ahead, then one 200 s ahead ...
        assert_eq!(waits[0], Ok(Duration::ZERO));
        let secs = |w: &Result<Duration, Refused>| w.map(|w| w.as_secs_f64().round());
        assert_eq!((secs(&waits[1]), secs(&waits[2])), (Ok(100.0), Ok(200.0)));
        // ... and one 300 s ahead is further than the 250 s a request may wait.
        let pending = admission.unauthenticated(here).await.expect("source");
        assert_eq!(
            admission.authenticated(pending, "CAB-1").await,
            Err(Refused::Sender)
        );
    }

    #[tokio::test]
    async fn the_source_map_is_bounded() {
        let admission = Admission::new(AdmissionConfig {
            max_sources: 100,
            ..AdmissionConfig::default()
        });
        for i in 0..5_000u32 {
            let source = IpAddr::from(std::net::Ipv4Addr::from(i));
            let _ = admission.unauthenticated(source).await;
            assert!(admission.tracked_sources() <= 100);
        }
    }
}
