//! The runtime on real RabbitMQ and PostgreSQL: per-key order, dead letters with reasons,
//! contained panics, and recovery when the broker drops its connections.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod ordering;
mod panics;
mod poison;
mod recovery;
