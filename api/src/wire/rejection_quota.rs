//! The bounds of the rejected-reports log (docs/security.md, "Rejected reports"): how many
//! unauthenticated refusals a source may leave a minute, in a bounded map; a leaf module, so
//! that the configuration can name it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

/// How the rejected-reports log is bounded.
#[derive(Debug, Clone, Copy)]
pub struct RejectionLogConfig {
    /// Unauthenticated refusals kept per source address a minute; the rest are counted.
    pub per_source_per_minute: u32,
    /// Source addresses tracked at once; a new one beyond it is counted, not kept.
    pub max_sources: usize,
    /// How long refusals (and the counts) are kept.
    pub retention: Duration,
}

impl RejectionLogConfig {
    pub const DEFAULT_RETENTION_DAYS: u64 = 180;
}

impl Default for RejectionLogConfig {
    fn default() -> Self {
        RejectionLogConfig {
            per_source_per_minute: 60,
            max_sources: 65_536,
            // Six months: what GB/T 22239 level 3 asks of security logs.
            retention: Duration::from_secs(Self::DEFAULT_RETENTION_DAYS * 86_400),
        }
    }
}

/// Unauthenticated refusals kept per source in the current minute; a bounded map.
pub struct RejectionQuota {
    config: RejectionLogConfig,
    kept: Mutex<HashMap<IpAddr, (i64, u32)>>,
}

impl RejectionQuota {
    pub fn new(config: RejectionLogConfig) -> RejectionQuota {
        RejectionQuota {
            config,
            kept: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> RejectionLogConfig {
        self.config
    }

    /// Whether one more unauthenticated refusal of `source` in `minute` may be kept.
    pub(super) fn take(&self, source: IpAddr, minute: i64) -> bool {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.contains_key(&source) && kept.len() >= self.config.max_sources.max(1) {
            // Only entries of the current minute still count for anything.
            kept.retain(|_, (at, _)| *at == minute);
            if kept.len() >= self.config.max_sources.max(1) {
                return false;
            }
        }
        let entry = kept.entry(source).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 >= self.config.per_source_per_minute {
            return false;
        }
        entry.1 += 1;
        true
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(per_minute: u32, sources: usize) -> RejectionQuota {
        RejectionQuota::new(RejectionLogConfig {
            per_source_per_minute: per_minute,
            max_sources: sources,
            ..RejectionLogConfig::default()
        })
    }

    fn address(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_source_keeps_its_cap_a_minute_and_again_the_next() {
        let quota = quota(3, 10);
        let kept: Vec<bool> = (0..5).map(|_| quota.take(address(1), 0)).collect();
        assert_eq!(kept, [true, true, true, false, false]);
        assert!(quota.take(address(2), 0), "another source has its own cap");
        assert!(quota.take(address(1), 60_000), "a new minute, a new cap");
    }

    #[test]
    fn the_map_of_sources_stays_bounded() {
        let quota = quota(1, 4);
        for n in 0..4 {
            assert!(quota.take(address(n), 0));
        }
        assert!(
            !quota.take(address(9), 0),
            "full with this minute's sources: counted only"
        );
        assert!(
            quota.take(address(9), 60_000),
            "the last minute's sources make room"
        );
        assert!(quota.tracked() <= 4);
    }
}
