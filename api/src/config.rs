use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::readside::Transport;
use crate::wire::admission::AdmissionConfig;
use crate::wire::rejection_quota::RejectionLogConfig;

/// Which event store to run on; chosen once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store `custody.db` in the data directory.
    Embedded,
    /// PostgreSQL at this URL.
    Postgres { url: String },
}

/// What `custody serve` runs with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub store: StoreChoice,
    /// Connections to PostgreSQL; ignored for the embedded store.
    pub max_connections: u32,
    /// The platform's SM2 encryption key (PKCS#8 PEM); generated in `data_dir` when absent.
    pub platform_key: Option<PathBuf>,
    /// The checkpoint signing key (SM2, PKCS#8 PEM); generated in `data_dir` when absent.
    pub checkpoint_key: Option<PathBuf>,
    /// The master key that wraps the persons' data keys (docs/personal-data.md); generated as
    /// `data_dir/master.key` when absent.
    pub master_key: Option<PathBuf>,
    /// The master key being rotated away from: data keys it wrapped still open until
    /// `custody keys rewrap` has re-wrapped them (docs/personal-data.md).
    pub previous_master_key: Option<PathBuf>,
    /// Seal personal data at rest (docs/personal-data.md). Always on for `serve`: no flag, env
    /// var or config key turns it off; only the sealing benchmark's "before" run does, through
    /// this field.
    pub seal_personal_data: bool,
    /// A file each new checkpoint is appended to (JSON lines), outside the database.
    pub checkpoint_witness: Option<PathBuf>,
    /// How often the log is sealed by a new checkpoint, when it grew.
    pub checkpoint_interval: std::time::Duration,
    /// The first operator token's secret (`CUSTODY_OPS_TOKEN`); generated and printed once at
    /// first start when absent.
    pub ops_token: Option<String>,
    pub admission: AdmissionConfig,
    /// How the rejected-reports log is bounded (cap per source, retention).
    pub rejection_log: RejectionLogConfig,
    pub protocol: ProtocolConfig,
    /// Where events reach the projectors from: the store itself, or NATS JetStream.
    pub transport: Transport,
    /// The return-date scheduler, reminders (per day, webhook) and the revocation cascade.
    pub processes: custody_processes::ProcessConfig,
    /// When cabinets may upload their nightly reconciliation batch (`sjsb-dzsj`), China time.
    pub reconciliation_window: custody_domain::reconciliation::ReconciliationWindow,
    /// This instance's name among several on one database (`--instance-id`): the holder of the
    /// worker leases it takes. None: its host name and port.
    pub instance_id: Option<String>,
    /// How long a worker lease lasts unrenewed, and how often it is renewed.
    pub leases: custody_eventlog::LeaseConfig,
}

impl ServeConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:8080";
    pub const DEFAULT_DATA_DIR: &'static str = "./data";
    /// Seconds between checkpoints (`--checkpoint-interval`).
    pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 60;

    /// The embedded default on `listen`, with data in `data_dir`.
    pub fn embedded(listen: SocketAddr, data_dir: PathBuf) -> ServeConfig {
        ServeConfig {
            listen,
            data_dir,
            store: StoreChoice::Embedded,
            max_connections: 32,
            platform_key: None,
            checkpoint_key: None,
            master_key: None,
            previous_master_key: None,
            seal_personal_data: true,
            checkpoint_witness: None,
            checkpoint_interval: std::time::Duration::from_secs(
                Self::DEFAULT_CHECKPOINT_INTERVAL_SECS,
            ),
            ops_token: None,
            admission: AdmissionConfig::default(),
            rejection_log: RejectionLogConfig::default(),
            protocol: ProtocolConfig::default(),
            transport: Transport::Store,
            processes: custody_processes::ProcessConfig::default(),
            reconciliation_window: Default::default(),
            instance_id: None,
            leases: custody_eventlog::LeaseConfig::default(),
        }
    }
}

/// How the ingress judges envelopes.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolConfig {
    /// How far `c.time` may be from the server clock.
    pub freshness: Duration,
    /// Whether every request must carry a gateway signature (`rsig`).
    pub require_gateway_signature: bool,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            freshness: Duration::from_secs(300),
            require_gateway_signature: false,
        }
    }
}
