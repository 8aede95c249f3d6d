//! The trust boundary, attacked from outside: a producer that publishes merit's own event
//! types, a broker user that writes where it may not, an id chosen to pre-claim one of
//! merit's own, a NUL in a title, and creations and votes meant to farm achievements.
//! Each test performs the attack against a real node (`merit serve` on RabbitMQ and
//! PostgreSQL, its own vhost and database) and checks that it changed nothing.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod api_creations;
mod deadlines;
mod harness;
mod producers_door;
