//! Test harness for the saga engine: a database of its own per test (a SQLite temp file or
//! a fresh PostgreSQL database), a fake external world that deduplicates effects by
//! idempotency key, and executor options with short timings.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use merit_sagas::{ExecutorOptions, SagaDefinition, SagaExecutor, SagaRegistry};
use merit_storage::Store;

pub use merit_testkit::{Backend, TestDb};

/// [`merit_testkit::on_both_backends!`] with 4 runtime workers, at this test crate's root.
#[macro_export]
macro_rules! on_both_backends {
    ($($t:tt)*) => { merit_testkit::on_both_backends! { workers = 4; $($t)* } };
}

/// Short timings for tests; a fixed jitter seed.
pub fn options(node: &str) -> ExecutorOptions {
    ExecutorOptions {
        node_id: node.to_string(),
        max_concurrent: 8,
        lease_ttl: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        max_inline_wait: Duration::from_secs(2),
        jitter_seed: Some(7),
    }
}

pub fn executor(store: Store, node: &str, defs: Vec<SagaDefinition>) -> SagaExecutor {
    let mut registry = SagaRegistry::new();
    for d in defs {
        registry.register(d).expect("valid definition");
    }
    SagaExecutor::new(store, registry, options(node))
}

/// The outside world as steps see it: every call is logged, and effects are applied at
/// most once per idempotency key (like a contract or an API honouring idempotency keys).
#[derive(Default, Clone)]
pub struct World {
    inner: Arc<Mutex<WorldState>>,
}

#[derive(Default)]
struct WorldState {
    calls: Vec<String>,
    effects: HashMap<String, u32>,
}

impl World {
    fn with<T>(&self, f: impl FnOnce(&mut WorldState) -> T) -> T {
        f(&mut self.inner.lock().expect("world lock"))
    }

    /// Logs a call (`"a"`, `"undo a"`).
    pub fn call(&self, what: impl Into<String>) {
        self.with(|w| w.calls.push(what.into()));
    }

    /// Applies the effect keyed `key`; `true` if it is new. Requests with a key seen before
    /// are counted but change nothing.
    pub fn apply(&self, key: &str) -> bool {
        self.with(|w| {
            let n = w.effects.entry(key.to_string()).or_default();
            *n += 1;
            *n == 1
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.with(|w| w.calls.clone())
    }

    pub fn count(&self, what: &str) -> usize {
        self.with(|w| w.calls.iter().filter(|c| *c == what).count())
    }

    /// Distinct effects applied.
    pub fn distinct_effects(&self) -> usize {
        self.with(|w| w.effects.len())
    }

    /// Requests made with `key` (1 = applied once, never repeated).
    pub fn requests(&self, key: &str) -> u32 {
        self.with(|w| w.effects.get(key).copied().unwrap_or(0))
    }
}

/// Polls `check` until it holds or `secs` pass.
pub async fn eventually<F: FnMut() -> bool>(secs: u64, what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
