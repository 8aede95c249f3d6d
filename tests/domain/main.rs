//! The domain end to end, on real RabbitMQ and PostgreSQL through an in-process node: a
//! scripted community (proposals with deadlines, votes, NFT boosts, achievements) ends in
//! the state computed by hand, and in the very same state when every event is delivered
//! twice; an NFT boosts at most one vote per proposal whoever holds it; a rule added at run
//! time reaches every node and a rollback withdraws it.
//!
//! One test binary: the harness and the store readers are shared by the three tests, each
//! in a module of its own.

#[path = "../common/mod.rs"]
mod common;

mod events;
mod expected;
mod harness;
mod reading;

mod one_boost;
mod runtime_rules;
mod script;
