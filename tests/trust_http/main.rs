//! The trust boundary of the HTTP side, attacked through a real node (`merit serve` as a
//! child process on PostgreSQL with the embedded broker): a `/ready` flood, a WebSocket
//! client that never reads, one session over the per-user cap, a spoofed
//! `X-Forwarded-For`, the admin token in the dashboard feed's URL.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod dashboard_ticket;
mod forwarding;
mod harness;
mod ready_flood;
mod siwe;
mod websocket;
