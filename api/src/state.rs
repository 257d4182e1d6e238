//! What every handler shares. A leaf: it names the services, and no route module is imported
//! here, so routes import it and nothing imports them back but the router in `server`.

use std::sync::Arc;

use custody_application::Application;
use custody_commands::Commands;

use crate::config::ProtocolConfig;
use crate::platform_key::PlatformKey;
use crate::readside::ReadSide;
use crate::registry::Registry;
use crate::wire::admission::Admission;
use crate::wire::crypto_pool::CryptoPool;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub commands: Arc<Commands>,
    /// The use cases every intake calls (application layer).
    pub application: Application,
    pub registry: Arc<Registry>,
    pub platform_key: Arc<PlatformKey>,
    pub admission: Arc<Admission>,
    /// Where ingress runs its SM2 work, off the async workers.
    pub crypto: Arc<CryptoPool>,
    /// Bounds what unauthenticated refusals leave in the rejected-reports log.
    pub rejection_quota: Arc<crate::wire::rejection_quota::RejectionQuota>,
    /// Refusals the store could not take when they happened, until it can.
    pub rejection_spool: Arc<custody_eventlog::rejection_spool::RejectionSpool>,
    pub protocol: ProtocolConfig,
    pub read_side: Arc<ReadSide>,
    /// The return-date scheduler, reminders and the revocation cascade; they stop when the last
    /// handle is dropped.
    pub processes: Arc<custody_processes::Processes>,
    /// Seals the log into signed checkpoints (docs/audit.md).
    pub checkpointer: Arc<crate::checkpointer::Checkpointer>,
    /// When `sjsb-dzsj` is taken (docs/reconciliation.md).
    pub reconciliation_window: custody_domain::reconciliation::ReconciliationWindow,
    /// Counters of requests and commands (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The department page's sign-ins (docs/department-page.md).
    pub sessions: Arc<crate::sessions::Sessions>,
    /// This instance's id (`--instance-id`), the holder named in the worker leases.
    pub instance: Arc<str>,
}
