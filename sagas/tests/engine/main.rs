//! The saga engine's forward and backward paths on SQLite and PostgreSQL: order, retries
//! with backoff, timeouts, permanent failures and compensation, finality-aware steps,
//! stuck compensations and operator retry, bounded concurrency.
//!
//! - forward: each action once, in order, alone and with many sagas at once within the
//!   bound;
//! - retries: transient failures, timeouts and panics are retried with backoff;
//! - compensation: a permanent failure or a step out of attempts compensates the completed
//!   steps in reverse; a compensation that gives up leaves the saga stuck until an
//!   operator retries;
//! - pending: a finality-aware step is re-polled until final and acts again after a reorg.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod compensation;
mod forward;
mod harness;
mod pending;
mod retries;
