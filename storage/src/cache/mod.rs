//! A multi-level read-through cache for per-user records many nodes read (benefits,
//! profiles): **L1** this node's memory (moka) → **L2** Redis, shared by all nodes → the
//! database, through a loader the caller passes.
//!
//! # Flow
//! - [`TieredCache::get_or_load`]: L1; on a miss L2; on a miss the loader. The value is
//!   written back into the tiers it missed, each write guarded against racing writes
//!   (below). Absent records (`Ok(None)`) are not cached.
//! - [`TieredCache::put`], after the database committed a change: L1 and L2 get the new
//!   value and every other node drops its L1 copy of exactly that key.
//! - [`TieredCache::invalidate`]: the keys are dropped from L1 on every node and from L2.
//! - Invalidations travel as `{"node": …, "instance": …, "keys": […]}` on the Redis
//!   channel `{prefix}invalidate`; each cache's subscriber task applies the messages of
//!   every other cache instance (`instance` is random per [`TieredCache`], so caches
//!   configured with the same `node_id` still hear each other).
//!
//! # Guarantees
//! - **Errors from Redis never reach the caller.** Every Redis operation has a 250 ms
//!   timeout; a failure is counted in [`CacheStats::l2_errors`] and the read goes on to the
//!   next tier. Once the subscriber sees Redis gone it marks it down (one warning), and the
//!   cache runs L1 → database without trying Redis until it answers again (one info line);
//!   the task reconnects in the background with backoff.
//! - **A slow fill never overwrites a newer write** — see "Racing writes" below.
//! - **Staleness.** With Redis up, a write is visible on other nodes as soon as they get
//!   its message (the message is published by the same Lua script that writes L2, so a
//!   node that drops its L1 copy reads the new value from L2). Pub/sub loses messages
//!   while a node is not subscribed, so **every (re)subscription clears the node's whole
//!   L1**. While Redis is down, no node hears another's writes; L1 entries then live at
//!   most `ttl` (moka `time_to_live`), which bounds how stale a multi-node deployment
//!   without Redis can be. A single node without Redis (or [`TieredCache::local`]) is
//!   always exact, because every write goes through it. Writes made while Redis was down
//!   are replayed as invalidations when it returns, so L2 and the other nodes drop what
//!   they held for those keys.
//! - **Ordering.** Writes to one key must be issued in commit order (one actor owns each
//!   user, so they are); two `put`s of one key racing each other have no defined winner.
//!
//! # Racing writes
//! A `get_or_load` that read an old value from the database (or L2) may finish after a
//! `put` or `invalidate` of the same key. Two guards keep its value out of the tiers:
//! - **L1: a write generation per key** (a fixed array of counters, module
//!   `generation`). The fill takes a token before reading any tier; writes advance the
//!   generation before they touch L1; the fill inserts only if its token is still current,
//!   checked inside moka's per-key `and_compute_with`, which every L1 mutation of that key
//!   goes through. Chosen over moka's `entry().or_insert_with` because that only
//!   coalesces concurrent loads: it does not stop a load from landing after a write.
//! - **L2: a generation counter in Redis** (`{prefix}gen:{key}`), read with the value
//!   (`MGET`), advanced by every write's script; the fill script stores the value only if
//!   the counter did not move (and the key is still absent, `SET NX`). A fill refused by
//!   L2 also skips L1: on another node the write's message may not have arrived yet.

mod generation;
mod key;
mod l1;
mod l2;
mod stats;
mod subscriber;

use std::{future::Future, sync::Arc, time::Duration};

use futures::StreamExt;
use serde::{de::DeserializeOwned, Serialize};
use tokio::{sync::oneshot, task::JoinHandle};

pub use key::{CacheKey, UnknownCacheKey};
pub use stats::CacheStats;

use l1::{CachedValue, L1};
use l2::{Fill, Lookup, L2};
use stats::Counters;

use crate::error::{Result, StorageError};

/// How many keys [`TieredCache::warm`] loads at once.
const WARM_CONCURRENCY: usize = 16;

/// How a cache is sized and named.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries in L1.
    pub l1_capacity: u64,
    /// Life of an entry in L1 and in L2: the staleness bound when invalidations cannot
    /// reach a node.
    pub ttl: Duration,
    /// Prefix of every Redis key and of the invalidation channel (`"merit:"` in
    /// production; unique per test).
    pub key_prefix: String,
    /// This node's name in logs and invalidation messages.
    pub node_id: String,
}

/// What [`TieredCache::warm`] did.
#[derive(Debug, Default)]
pub struct WarmReport {
    /// Keys now cached.
    pub cached: usize,
    /// Keys the loader found no record for (nothing cached).
    pub absent: usize,
    /// Keys whose load failed, with the error; they are simply loaded on first read.
    pub failed: Vec<(CacheKey, StorageError)>,
}

/// State shared by the handles and the subscriber task.
pub(crate) struct Core {
    config: CacheConfig,
    l1: L1,
    l2: Option<L2>,
    stats: Counters,
}

/// Aborts the subscriber task when the last handle goes.
struct Subscriber(JoinHandle<()>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The cache handle: cheap to clone, all clones share the tiers.
#[derive(Clone)]
pub struct TieredCache {
    core: Arc<Core>,
    _subscriber: Option<Arc<Subscriber>>,
}

impl std::fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No Redis URL: it may hold a password.
        f.debug_struct("TieredCache")
            .field("node_id", &self.core.config.node_id)
            .field("key_prefix", &self.core.config.key_prefix)
            .field("redis", &self.core.l2.is_some())
            .finish()
    }
}

impl TieredCache {
    /// L1 only, no Redis: exact for a single node, since every write goes through it.
    pub fn local(config: CacheConfig) -> Self {
        Self {
            core: Arc::new(Core::new(config, None)),
            _subscriber: None,
        }
    }

    /// L1 + Redis L2 at `redis_url`, and the invalidation subscriber task.
    ///
    /// Never fails: if Redis is unreachable it logs one warning, runs L1 → database and
    /// keeps reconnecting in the background. Waits at most about a second for the first
    /// connection, so a healthy Redis is in use when this returns. A malformed URL is
    /// logged as an error and gives a cache that never uses Redis (the same as
    /// [`TieredCache::local`]).
    pub async fn with_redis(config: CacheConfig, redis_url: &str) -> Self {
        let l2 = match L2::new(redis_url, &config.key_prefix, &config.node_id, config.ttl) {
            Ok(l2) => l2,
            Err(e) => {
                tracing::error!(
                    node = %config.node_id,
                    error = %e,
                    "malformed redis URL: the cache runs without L2 and cross-node invalidation"
                );
                return Self::local(config);
            }
        };
        let core = Arc::new(Core::new(config, Some(l2)));
        let (first_attempt, connected) = oneshot::channel();
        let task = tokio::spawn(subscriber::run(core.clone(), first_attempt));
        let _ = tokio::time::timeout(Duration::from_secs(2), connected).await;
        Self {
            core,
            _subscriber: Some(Arc::new(Subscriber(task))),
        }
    }

    /// Read-through: L1, then L2, then `load()` (the database); fills the tiers it missed.
    ///
    /// Errors come only from `load`. A cached value that does not decode as `T` is treated
    /// as a miss (and logged): reading one key as two types is a caller bug.
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn get_or_load<T, F, Fut>(&self, key: &CacheKey, load: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let core = &self.core;
        if let Some(cached) = core.l1.get(key).await {
            match cached.decode::<T>() {
                Ok(value) => {
                    Counters::bump(&core.stats.l1_hits);
                    return Ok(Some(value));
                }
                Err(e) => tracing::warn!(
                    key = %key,
                    error = %e,
                    "L1 value does not decode as the requested type: reloading"
                ),
            }
        }
        Counters::bump(&core.stats.l1_misses);
        // Taken before any lower tier is read: a write after this point outdates the fill.
        let token = core.l1.token(key);

        let mut l2_generation = None;
        if let Some(l2) = &core.l2 {
            match l2.lookup(key).await {
                Ok(Lookup::Hit(json)) => match serde_json::from_str::<T>(&json) {
                    Ok(value) => {
                        Counters::bump(&core.stats.l2_hits);
                        core.l1
                            .fill(key, token, CachedValue::with_typed(json, value.clone()))
                            .await;
                        return Ok(Some(value));
                    }
                    Err(e) => {
                        Counters::bump(&core.stats.l2_errors);
                        tracing::warn!(
                            key = %key,
                            error = %e,
                            "L2 value does not decode as the requested type: loading"
                        );
                    }
                },
                Ok(Lookup::Miss { generation }) => {
                    Counters::bump(&core.stats.l2_misses);
                    l2_generation = Some(generation);
                }
                Err(e) => {
                    Counters::bump(&core.stats.l2_errors);
                    tracing::debug!(key = %key, error = %e, "L2 lookup skipped or failed");
                }
            }
        }

        Counters::bump(&core.stats.loads);
        let Some(value) = load().await? else {
            return Ok(None);
        };
        let json = match serde_json::to_string(&value) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "value does not serialise: not cached");
                return Ok(Some(value));
            }
        };

        if let (Some(l2), Some(generation)) = (&core.l2, l2_generation) {
            match l2.fill(key, &generation, &json).await {
                Ok(Fill::Stored | Fill::AlreadyCached) => {}
                Ok(Fill::Outdated) => {
                    // A write happened since we looked; its message may not be here yet,
                    // so our (possibly older) value must not reach L1 either.
                    tracing::debug!(key = %key, "fill outdated by a write: not cached");
                    return Ok(Some(value));
                }
                Err(e) => {
                    Counters::bump(&core.stats.l2_errors);
                    tracing::debug!(key = %key, error = %e, "L2 fill skipped or failed");
                }
            }
        }
        core.l1
            .fill(key, token, CachedValue::with_typed(json, value.clone()))
            .await;
        Ok(Some(value))
    }

    /// Write-through after a committed change: L1 and L2 hold `value`, and every other
    /// node drops its L1 copy of exactly this key.
    ///
    /// If Redis does not take the write, the key is remembered and replayed as an
    /// invalidation when Redis answers again. A value that does not serialise is
    /// invalidated instead, so no tier keeps the old one.
    #[tracing::instrument(level = "debug", skip_all, fields(key = %key))]
    pub async fn put<T: Serialize>(&self, key: &CacheKey, value: &T) {
        let json = match serde_json::to_string(value) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "value does not serialise: invalidating");
                self.invalidate(std::slice::from_ref(key)).await;
                return;
            }
        };
        let core = &self.core;
        core.l1
            .set(key, CachedValue::from_json(json.as_str()))
            .await;
        if let Some(l2) = &core.l2 {
            match l2.put(key, &json).await {
                Ok(()) => Counters::bump(&core.stats.invalidations_sent),
                Err(e) => {
                    Counters::bump(&core.stats.l2_errors);
                    l2.defer(std::slice::from_ref(key));
                    tracing::debug!(key = %key, error = %e, "L2 write deferred");
                }
            }
        }
    }

    /// Drops exactly `keys` everywhere: this node's L1 now, L2 and every other node's L1
    /// through Redis (or, if Redis does not take it, when Redis answers again).
    #[tracing::instrument(level = "debug", skip_all, fields(keys = keys.len()))]
    pub async fn invalidate(&self, keys: &[CacheKey]) {
        let core = &self.core;
        for key in keys {
            core.l1.remove(key).await;
        }
        let Some(l2) = &core.l2 else {
            return;
        };
        if keys.is_empty() {
            return;
        }
        match l2.invalidate(keys).await {
            Ok(sent) => {
                core.stats
                    .invalidations_sent
                    .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            }
            Err((sent, e)) => {
                core.stats
                    .invalidations_sent
                    .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
                Counters::bump(&core.stats.l2_errors);
                l2.defer(keys);
                tracing::debug!(keys = keys.len(), error = %e, "L2 invalidation deferred");
            }
        }
    }

    /// Warm-up (e.g. the most active users at start): reads `keys` through the cache,
    /// 16 at a time, so they land in L1 (and L2). `load` loads one key.
    /// Best effort: a failed key is reported and will simply be loaded on first read.
    pub async fn warm<T, F, Fut>(&self, keys: Vec<CacheKey>, load: F) -> WarmReport
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: Fn(CacheKey) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let load = &load;
        let results: Vec<(CacheKey, Result<Option<T>>)> = futures::stream::iter(keys)
            .map(|key| async move {
                let result = self.get_or_load(&key, || load(key.clone())).await;
                (key, result)
            })
            .buffer_unordered(WARM_CONCURRENCY)
            .collect()
            .await;
        let mut report = WarmReport::default();
        for (key, result) in results {
            match result {
                Ok(Some(_)) => report.cached += 1,
                Ok(None) => report.absent += 1,
                Err(e) => report.failed.push((key, e)),
            }
        }
        tracing::info!(
            node = %self.core.config.node_id,
            cached = report.cached,
            absent = report.absent,
            failed = report.failed.len(),
            "cache warmed"
        );
        report
    }

    /// Counters since this cache was built, and whether Redis is in use.
    pub fn stats(&self) -> CacheStats {
        let redis_up = self.core.l2.as_ref().is_some_and(|l2| l2.health.is_up());
        self.core.stats.snapshot(self.core.l2.is_some(), redis_up)
    }
}

impl Core {
    fn new(config: CacheConfig, l2: Option<L2>) -> Self {
        Self {
            l1: L1::new(config.l1_capacity, config.ttl),
            l2,
            stats: Counters::default(),
            config,
        }
    }
}

#[cfg(test)]
mod tests;
