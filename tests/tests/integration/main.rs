//! Integration tests: one binary, so the throwaway PostgreSQL and nats-server start once.

mod business_time;
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
mod instances;
mod leases;
mod lifecycle;
mod operations;
mod process_recovery;
mod read_side;
mod reconciliation;
mod rejection_log;
mod replay;
mod state_machines;
mod stats;
mod time_rules;
mod tokens;
mod unit_messages;
