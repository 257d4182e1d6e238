//! The `custody` service: HTTP routes over the application services, and the start-up that
//! chooses the event store.

mod config;
mod health;
mod server;

pub use config::{ServeConfig, StoreChoice};
pub use server::{App, AppState};
