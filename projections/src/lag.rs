//! Projection lag: for every event a projector applies live, how long after the platform
//! recorded it (`recorded_at` in its metadata) the projector's transaction committed.
//!
//! A log-linear histogram in milliseconds: exact below 128 ms, then 64 buckets per power of two
//! (at most 1.6 % relative error), up to 2^40 ms. Fixed size (about 18 KiB), no allocation per
//! event, kept since the projector started.

/// Values below this are counted exactly.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above [`LINEAR`] (2^SUB_BITS).
const SUB_BITS: u32 = 6;
/// Powers of two from 2^7 (= LINEAR) up to 2^40 ms (about 35 years).
const OCTAVES: usize = 34;
const BUCKETS: usize = LINEAR as usize + OCTAVES * (1 << SUB_BITS);

/// Lag figures of one projector since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LagSummary {
    /// Events applied live (rebuilds do not count).
    pub count: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

#[derive(Clone)]
pub struct LagHistogram {
    buckets: Box<[u64; BUCKETS]>,
    count: u64,
    max: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            buckets: Box::new([0; BUCKETS]),
            count: 0,
            max: 0,
        }
    }
}

impl std::fmt::Debug for LagHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LagHistogram")
            .field("summary", &self.summary())
            .finish()
    }
}

fn bucket(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let octave = 63 - value.leading_zeros(); // >= 7
    let sub = (value >> (octave - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let index = LINEAR as usize + (octave as usize - 7) * (1 << SUB_BITS) + sub as usize;
    index.min(BUCKETS - 1)
}

/// The largest value that falls into bucket `index`.
fn upper_bound(index: usize) -> u64 {
    if index < LINEAR as usize {
        return index as u64;
    }
    let above = index - LINEAR as usize;
    let octave = (above >> SUB_BITS) as u32 + 7;
    let sub = (above & ((1 << SUB_BITS) - 1)) as u64;
    let width = 1u64 << (octave - SUB_BITS);
    (1u64 << octave) + (sub + 1) * width - 1
}

impl LagHistogram {
    /// Counts one event's lag; a negative lag (clocks that disagree) counts as 0.
    pub fn record(&mut self, lag_ms: i64) {
        let value = u64::try_from(lag_ms).unwrap_or(0);
        self.buckets[bucket(value)] += 1;
        self.count += 1;
        self.max = self.max.max(value);
    }

    /// The smallest bucket bound below which at least `quantile` of the events fall (never
    /// above the largest value seen).
    pub fn quantile(&self, quantile: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((quantile.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return upper_bound(index).min(self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> LagSummary {
        LagSummary {
            count: self.count,
            p50_ms: self.quantile(0.50),
            p99_ms: self.quantile(0.99),
            max_ms: self.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_their_values() {
        for value in (0..5_000).chain([1 << 20, (1 << 20) + 12345, 1 << 39]) {
            let index = bucket(value);
            assert!(upper_bound(index) >= value, "{value}");
            if index > 0 {
                assert!(upper_bound(index - 1) < value, "{value}");
            }
        }
    }

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = LagHistogram::default();
        for value in 1..=10_000 {
            histogram.record(value);
        }
        histogram.record(-5);
        let summary = histogram.summary();
        assert_eq!(summary.count, 10_001);
        assert_eq!(summary.max_ms, 10_000);
        assert!((4_900..=5_100).contains(&summary.p50_ms), "{summary:?}");
        assert!((9_800..=10_000).contains(&summary.p99_ms), "{summary:?}");
        let mut small = LagHistogram::default();
        for value in [3, 3, 4, 90] {
            small.record(value);
        }
        assert_eq!(small.summary().p50_ms, 3);
        assert_eq!(small.summary().p99_ms, 90);
    }
}
