//! The `custody` service: HTTP routes over the application services, and the start-up that
//! chooses the event store.

pub mod audit;
pub mod auth;
pub mod backup;
pub mod checkpointer;
pub mod checkpoints;
pub mod client;
mod config;
pub mod config_file;
pub mod deadline;
pub mod erasure;
pub mod error;
mod health;
pub mod master_key;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod ops;
pub mod overdue;
pub mod platform_key;
pub mod process_ops;
pub mod read;
pub mod readside;
pub mod reconciliations;
pub mod registry;
pub mod rejection_ops;
pub mod scope;
pub mod scrape;
mod server;
pub mod sessions;
mod state;
pub mod ui;
pub mod wire;

pub use config::{ProtocolConfig, ServeConfig, StoreChoice};
pub use error::{ErrorCode, WireError};
pub use readside::Transport;
pub use server::{App, StartError, WorkerLeases};
pub use state::AppState;
