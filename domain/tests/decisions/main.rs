//! Decision tests: each aggregate's `decide` and `apply`, with no store, in the cqrs-es
//! given/when/then form (`cqrs_es::test::TestFramework`).
//!
//! For Document, Person and Cabinet, every state × every event kind of the transition table is
//! run: a history (given) that brings a fresh aggregate to the state, a command whose event is of
//! that kind (when), and then either exactly the expected event and the target state, or
//! `IllegalTransition` naming the state. The expected outcome of each pair is the SPEC §3 table
//! restated here, not read from the code's `TRANSITIONS`, so a wrong row there fails. The
//! integration tests (`tests/tests/integration/state_machines.rs`) run the same matrix through
//! the application service on real stores.

mod cabinet;
mod document;
mod given_when_then;
mod person;
