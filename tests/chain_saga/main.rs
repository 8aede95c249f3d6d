//! The AchievementUnlock saga end to end against a real EVM node: `merit serve` as a
//! child process on RabbitMQ (a private vhost) and PostgreSQL (a fresh database), with
//! `MERIT_CHAIN_RPC_URL` pointing at an anvil of the test's own on a free port and the
//! achievement contract deployed by the test. A first proposal mints exactly one token; a
//! mint the contract refuses (minter role revoked) is compensated; a node SIGKILLed while
//! its mint waits for confirmations resumes it after a restart without minting again.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod mint;
mod transfer;
mod world;
