//! The chain adapter against a real anvil and a SQLite store: one anvil and one database
//! per test, so the tests run in parallel.
//!
//! - the listener turns mints, transfers and burns into outbox events, once each, and
//!   backfills what happened while it was stopped;
//! - reorgs: one shallower than the confirmations publishes nothing, one below the
//!   checkpoint rewinds and rereads;
//! - `full_sync` repairs a transfer the listener skipped;
//! - the adapter's errors: a revoked minter role, a node that is down and back, a burn
//!   after the token changed hands;
//! - the minter's key from a keystore or an external signer.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod burn;
mod failures;
mod harness;
mod listener;
mod reorgs;
mod repair;
mod signers;
