//! The benefits cache inside running nodes (real PostgreSQL, a private RabbitMQ vhost, real
//! Redis): a benefits change committed on one node reaches a vote weighed on another node
//! through Redis pub/sub (and, as the control, does not without Redis); and a node whose
//! Redis is SIGKILLed and restarted mid-run still weighs every vote by the holdings of
//! its time, with nothing dead-lettered.
//!
//! Every test has its own database, vhost and Redis key prefix. The cross-node tests use
//! the shared Redis (`MERIT_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and delete
//! their keys at the end; the restart test runs a throwaway `redis-server` of its own.
//!
//! One test binary: the harness, then each behaviour in a module of its own.

#[path = "../common/mod.rs"]
mod common;

mod harness;

mod cross_node;
mod redis_restart;
