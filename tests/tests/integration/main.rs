//! Integration tests: one binary, so the throwaway PostgreSQL and nats-server start once.

mod checkpoints;
mod concurrency;
mod custody;
mod department_page;
mod errors;
mod exit_entry;
mod faults;
mod feed;
mod harness;
mod ingress;
mod lifecycle;
mod process_recovery;
mod read_side;
mod reconciliation;
mod replay;
mod state_machines;
mod time_rules;
mod unit_messages;
