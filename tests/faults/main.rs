//! The fault suite: a node under load from `merit simulate` (250 votes/s for 20 s, 2 % of
//! them re-sent under the same id) while something it depends on fails — the node itself
//! (SIGKILLed three times), RabbitMQ, PostgreSQL, Redis, the chain's RPC node (anvil), or
//! one of two nodes. After each fault a checker waits for the work to settle and counts
//! what was lost, doubled or unexpected: votes (event id by event id, against the ledger
//! `merit simulate --ledger` writes of what the broker confirmed), achievements, NFTs (in
//! merit's tables and, on anvil, on chain) and notifications. All zero.
//!
//! These faults hit services the whole machine shares (RabbitMQ, PostgreSQL, Redis) or
//! take seconds of wall time: they are the fault tier, `#[ignore]`d like the service tier,
//! and they run only where `MERIT_FAULT_TIER=1` says they run alone (a `cargo test --
//! --include-ignored` beside other tests skips them and says so). `.ci/run` runs them after
//! the other tiers, one at a time:
//! `MERIT_FAULT_TIER=1 cargo test --test faults -- --ignored --test-threads=1`.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod broker;
mod chain;
mod checker;
mod cluster;
mod database;
mod harness;
mod ledger;
mod nodes;
mod redis_down;
