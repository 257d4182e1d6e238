//! The cabinet simulator: simulated certificate cabinets that enroll, activate and send signed,
//! enveloped reports to a running service (SPEC §5, §9), and a load generator built on them.
//!
//! - [`cabinet`]: [`SimulatedCabinet`], its SM2 key and every report it signs;
//! - [`generate`]: valid random identifiers, documents and business serials; wire time formats;
//! - [`http`]: posting signed requests, the ops API calls, provisioning a unit with cabinets;
//! - [`load`]: the load generator behind `custody simulate --load`;
//! - [`exit_entry`]: [`SimulatedExitEntryAdapter`], the exit-entry administration's pushes;
//! - [`unit`]: [`SimulatedUnitClient`], a unit's filing lists, approvals and consent letters.
//!
//! `custody simulate` only ever sends to the `--url` it is given.
//!
//! A crate of its own, apart from `custody-api`: it reaches the service over HTTP only, as a real
//! cabinet would, so nothing of the service's internals can leak into what it sends.

pub mod cabinet;
mod cli;
pub mod error;
pub mod exit_entry;
pub mod generate;
pub mod http;
pub mod load;
pub mod reconciliation;
pub mod unit;

#[cfg(test)]
mod tests;

use clap::{ArgGroup, Args};

pub use cabinet::{
    AbnormalReason, CabinetBody, CabinetSpec, CancellationReason, CustodyOperation, DepositKind,
    DeviceEnrollment, SimulatedCabinet, Trip,
};
pub use error::SimulateError;
pub use exit_entry::SimulatedExitEntryAdapter;
pub use http::{
    http_client, post, post_expecting_success, provision_fleet, Fleet, OpsClient, PlatformKey,
    ServiceReply,
};
pub use load::{run_load, LoadConfig, LoadReport};
pub use unit::SimulatedUnitClient;

/// `custody simulate`: drive a running service with simulated cabinets.
#[derive(Args)]
#[command(group(
    ArgGroup::new("mode").required(true).args(["load", "deposit", "lifecycle", "crypto_ceiling"])
))]
pub struct SimulateArgs {
    /// Base URL of the running service. Nothing else is ever contacted.
    #[arg(long, env = "CUSTODY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Operator token for the ops API (sent as `Authorization: Bearer <token>`); `--ops-token`
    /// is the older name.
    #[arg(
        long = "token",
        alias = "ops-token",
        env = "CUSTODY_TOKEN",
        hide_env_values = true
    )]
    pub ops_token: Option<String>,

    /// Load test: enroll and activate --cabinets cabinets, then send new-document deposits
    /// from --concurrency senders for --duration seconds and print the figures.
    #[arg(long)]
    pub load: bool,

    /// Single shot: enroll and activate one cabinet, send one deposit, print the response.
    #[arg(long)]
    pub deposit: bool,

    /// Single shot: walk one cabinet and one document through every report type (heartbeat,
    /// deposit, lend, return, take out, abnormal withdrawal, alarm, cancellation, a replay and
    /// a duplicate), printing each response.
    #[arg(long)]
    pub lifecycle: bool,

    /// The crypto ceiling of ingress: SM2 verify (through a key table) and GM/T 0010 open of
    /// one report, on every core at once for --duration seconds; prints reports/s. Contacts
    /// no service.
    #[arg(long)]
    pub crypto_ceiling: bool,

    /// Load: simulated cabinets.
    #[arg(long, default_value_t = 10)]
    pub cabinets: usize,

    /// Load: seconds of sending (at most 240: reports are signed beforehand and the service
    /// refuses those older than 300 s).
    #[arg(long, default_value_t = 30)]
    pub duration: u64,

    /// Load: concurrent senders.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,

    /// Load: reports signed and sealed before the timed phase; the run ends when they run out.
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,

    /// Load: an open loop at this many reports a second (at most --concurrency in flight),
    /// each timed from when it was due; without it the senders go as fast as they can.
    #[arg(long)]
    pub rate: Option<u32>,

    /// Seconds to wait for any one response.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

impl std::fmt::Debug for SimulateArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The operator token must not end up in logs.
        f.debug_struct("SimulateArgs")
            .field("url", &self.url)
            .field("ops_token", &self.ops_token.as_ref().map(|_| "<redacted>"))
            .field("load", &self.load)
            .field("deposit", &self.deposit)
            .field("lifecycle", &self.lifecycle)
            .field("crypto_ceiling", &self.crypto_ceiling)
            .field("cabinets", &self.cabinets)
            .field("duration", &self.duration)
            .field("concurrency", &self.concurrency)
            .field("requests", &self.requests)
            .field("rate", &self.rate)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Runs `custody simulate`.
pub async fn run(args: SimulateArgs) -> Result<(), Box<dyn std::error::Error>> {
    cli::run(args).await.map_err(Into::into)
}
