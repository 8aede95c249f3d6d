//! Dead letters as an operator works through them, against `merit serve` on a real
//! RabbitMQ: the recorder moves `merit.dlq` into the database, listings page by cursor,
//! and replay or discard act by id or by filter.
//!
//! - 10,000 dead letters page through exactly once each, in arrival order, while 500 more
//!   arrive;
//! - a bulk replay of one class (after a dry run that only counts) puts each back once
//!   and leaves the other class waiting;
//! - a node SIGKILLed in the middle of a bulk replay, restarted, and asked again, neither
//!   loses nor doubles one.
//!
//! The dead letters are published to `merit.dlx` by the test as merit itself publishes
//! them (message id = dead-letter id, `x-merit-*` reason headers), so thousands arrive in
//! seconds.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod paging;
mod replay;
