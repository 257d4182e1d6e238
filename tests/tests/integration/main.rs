//! Integration tests: one binary, so the throwaway PostgreSQL and nats-server start once.

mod concurrency;
mod harness;
mod ingress;
mod replay;
mod state_machines;
