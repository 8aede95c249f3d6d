//! Poison traffic at volume: 10,000 malformed messages of every dead-letter class a
//! producer can cause, interleaved with 20 proposals and 2,000 good votes, published to a
//! real node (`merit serve` on RabbitMQ and PostgreSQL, its own vhost and database).
//! Every malformed message must land in the dead-letter queue exactly once, with the class
//! merit documents and a reason naming the field at fault; the good votes must all be
//! counted, none of them dead-lettered, and the node must stay ready.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod dead_letters;
mod traffic;
