//! The tiered cache against real Redis: read-through across nodes, write-through and
//! precise invalidation over pub/sub, Redis unreachable from the start, Redis killed and
//! restarted mid-test, and the slow-fill race.
//!
//! The shared Redis is `MERIT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); every
//! test uses its own key prefix and deletes its keys at the end (also when it fails). The restart test never
//! touches the shared server: it runs a throwaway `redis-server` of its own.
//!
//! One test binary, in modules by behaviour.

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod race;
mod redis_down;
mod sharing;
