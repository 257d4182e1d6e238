//! What is kept of a refused report (SPEC §3.1, §9; docs/security.md, "Rejected reports").
//!
//! An authenticated sender's refusal is kept whole. An unauthenticated one is kept as its SM3,
//! size, source address, code and first bytes, and at most `per_source_per_minute` of them a
//! source a minute: beyond that only a counter grows. Whatever a stranger sends, the log grows
//! by at most that many short entries per source and minute, and the retention prunes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use custody_eventlog::{Rejection, RejectionSummary};

use super::reply::{Named, Received};
use crate::error::WireError;
use crate::state::AppState;

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
    fn take(&self, source: IpAddr, minute: i64) -> bool {
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

/// Keeps a refused report in the rejected-reports log: whole when `authenticated`, else
/// bounded as above. A failure to keep it is logged; the refusal still reaches the sender,
/// which keeps its report and retries.
pub async fn keep_rejection(
    state: &AppState,
    received: &Received<'_>,
    named: Named<'_>,
    error: &WireError,
    message: String,
    authenticated: bool,
) {
    let platform = state.commands.log().platform();
    let received_ms = received.now.timestamp_millis();
    let source = received.source.map(|address| address.to_string());
    if !authenticated {
        let minute = received_ms.div_euclid(60_000) * 60_000;
        let address = received
            .source
            .unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
        if !state.rejection_quota.take(address, minute) {
            let counted = platform
                .count_not_kept(minute, &address.to_string(), error.code.as_str())
                .await;
            if let Err(error) = counted {
                tracing::error!(%error, "could not count a refused report");
            }
            return;
        }
    }
    let summary = RejectionSummary {
        id: 0,
        received_ms,
        mstype: received.mstype.to_string(),
        ei: named.ei.to_string(),
        reqid: named.reqid.to_string(),
        ywlsh: named.ywlsh.to_string(),
        http_status: i64::from(error.status().as_u16()),
        error_code: error.code.as_str().to_string(),
        error_message: message,
        authenticated,
        body_sm3: received.body_sm3.clone(),
        body_size: 0,
        body_whole: true,
        source,
        touched_unit: error.touched_unit.clone(),
    };
    let rejection = Rejection::of_body(summary, received.body);
    if let Err(error) = platform.insert_rejection(&rejection).await {
        tracing::error!(%error, code = rejection.summary.error_code, "could not keep a rejected report");
    }
}

/// Prunes refusals older than the retention, every hour.
pub fn spawn_retention(state: &AppState) {
    let commands = state.commands.clone();
    let retention = state.rejection_quota.config().retention;
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            let before = commands.clock().now().timestamp_millis()
                - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            match commands
                .log()
                .platform()
                .prune_rejections_before(before)
                .await
            {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned refusals past their retention"),
                Err(error) => tracing::warn!(%error, "could not prune old refusals"),
            }
        }
    });
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
