//! The HTTP API against a real node (`merit serve` as a child process on RabbitMQ and
//! PostgreSQL, its own vhost and database): every endpoint's success and its bad inputs,
//! authentication and authorisation, readiness while the broker is unreachable, rate
//! limits, and that no configured secret ever appears in a response or the log.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod config;
mod harness;
mod limits_and_secrets;
mod operator_views;
mod probes;
mod proposal_flow;
mod readiness;
