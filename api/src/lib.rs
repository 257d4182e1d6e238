//! The `custody` service: HTTP routes over the application services, and the start-up that
//! chooses the event store.

pub mod auth;
mod config;
pub mod error;
mod health;
pub mod ops;
pub mod platform_key;
pub mod registry;
mod server;
pub mod simulate;
pub mod wire;

pub use config::{ServeConfig, StoreChoice};
pub use error::{ErrorCode, WireError};
pub use server::{App, AppState, StartError};
