//! What is kept of a refused report (SPEC §3.1, §9; docs/security.md, "Rejected reports").
//!
//! An authenticated sender's refusal is kept whole. An unauthenticated one is kept as its SM3,
//! size, source address, code and first bytes, and at most `per_source_per_minute` of them a
//! source a minute: beyond that only a counter grows. Whatever a stranger sends, the log grows
//! by at most that many short entries per source and minute, and the retention prunes it.

use std::net::IpAddr;
use std::time::Duration;

use custody_eventlog::rejection_spool::Spooled;
use custody_eventlog::{Rejection, RejectionSummary};

use super::reply::{Named, Received};
use crate::error::WireError;
use crate::state::AppState;

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
            let counted = tokio::time::timeout(
                KEEP_BUDGET,
                platform.count_not_kept(minute, &address.to_string(), error.code.as_str()),
            )
            .await;
            match counted {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "could not count a refused report"),
                Err(_) => tracing::error!("could not count a refused report: the store hung"),
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
    let inserted = tokio::time::timeout(KEEP_BUDGET, platform.insert_rejection(&rejection)).await;
    let failure = match inserted {
        Ok(Ok(())) => return,
        Ok(Err(error)) => error.to_string(),
        Err(_) => "the store did not answer in time".to_string(),
    };
    // The store is going away or hung: the refusal waits in the spool until it is back.
    let code = &rejection.summary.error_code;
    match state.rejection_spool.put(&rejection) {
        Ok(Spooled::Kept) => {
            tracing::warn!(%failure, code, "a refusal is spooled until the store takes it")
        }
        Ok(Spooled::Full) => {
            tracing::error!(%failure, code, "a refusal is not kept: the store and the spool are full")
        }
        Err(error) => {
            tracing::error!(%failure, %error, code, "a refusal is not kept: the spool cannot be written")
        }
    }
}

/// How long a refusal may wait for the store before it is spooled.
const KEEP_BUDGET: Duration = Duration::from_secs(2);

/// Moves spooled refusals into the store every two seconds, once it takes them.
pub fn spawn_spool_drain(state: &AppState) {
    let (commands, spool) = (state.commands.clone(), state.rejection_spool.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(2));
        loop {
            every.tick().await;
            if spool.is_empty() {
                continue;
            }
            match spool.drain(commands.log().platform()).await {
                Ok(0) => {}
                Ok(moved) => tracing::info!(moved, "spooled refusals kept in the store"),
                Err(error) => tracing::debug!(%error, "spooled refusals wait for the store"),
            }
        }
    });
}

/// Prunes refusals older than the retention, every hour.
pub fn spawn_retention(state: &AppState, lease: custody_eventlog::Lease) {
    let commands = state.commands.clone();
    let retention = state.rejection_quota.config().retention;
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            // An idempotent delete: the lease saves work, no fence is needed.
            if lease.token().is_none() {
                continue;
            }
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
