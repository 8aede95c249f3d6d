//! The storage write path on SQLite and PostgreSQL: migrations, atomic turns, idempotency
//! by event id, optimistic version checks, concurrent writers, the outbox.
//!
//! One test binary; each concern in a module of its own.

#[path = "../common/mod.rs"]
mod common;

mod fixtures;

mod group_commit;
mod outage;
mod retention;
mod sequences;
mod turns;
