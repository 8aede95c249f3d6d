//! Harness: key prefixes, the cache's configuration, a stand-in database, and the
//! shared Redis cleaned up after each test.

use std::{
    collections::HashMap,
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

use merit_storage::{CacheConfig, CacheKey, TieredCache};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::{self, redis_url};

pub(crate) fn init_logs() {
    common::init_test_logs("merit_storage::cache=info");
}

/// A key prefix no other test (or run) shares.
pub(crate) fn fresh_prefix() -> String {
    format!("merit-test-{}:", Uuid::new_v4().simple())
}

pub(crate) fn config(prefix: &str, node: &str) -> CacheConfig {
    CacheConfig {
        l1_capacity: 10_000,
        // Long enough that no test passes because an entry expired.
        ttl: Duration::from_secs(120),
        key_prefix: prefix.to_string(),
        node_id: node.to_string(),
    }
}

pub(crate) fn user(n: u8) -> CacheKey {
    CacheKey::Benefits(format!("0x{n:040x}"))
}

/// What the cache holds for a user in these tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Benefits {
    pub(crate) vote_multiplier_bps: u32,
    pub(crate) nfts: Vec<u64>,
}

pub(crate) fn benefits(bps: u32) -> Benefits {
    Benefits {
        vote_multiplier_bps: bps,
        nfts: vec![u64::from(bps)],
    }
}

/// The database behind the cache: committed values and a count of reads.
#[derive(Clone, Default)]
pub(crate) struct Db {
    pub(crate) rows: Arc<Mutex<HashMap<CacheKey, Benefits>>>,
    pub(crate) reads: Arc<AtomicU64>,
}

impl Db {
    pub(crate) fn commit(&self, key: &CacheKey, value: Benefits) {
        self.rows
            .lock()
            .expect("db lock")
            .insert(key.clone(), value);
    }

    pub(crate) fn read(&self, key: &CacheKey) -> Option<Benefits> {
        self.reads.fetch_add(1, SeqCst);
        self.rows.lock().expect("db lock").get(key).cloned()
    }

    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }

    /// The loader a node passes to `get_or_load`.
    pub(crate) fn loader(
        &self,
        key: &CacheKey,
    ) -> impl FnOnce() -> std::future::Ready<merit_storage::Result<Option<Benefits>>> {
        let (db, key) = (self.clone(), key.clone());
        move || std::future::ready(Ok(db.read(&key)))
    }
}

pub(crate) async fn get(cache: &TieredCache, db: &Db, key: &CacheKey) -> Option<Benefits> {
    cache
        .get_or_load(key, db.loader(key))
        .await
        .expect("the cache never fails when the database does not")
}

/// A loader for reads that must be served by a cache tier.
pub(crate) fn must_not_load() -> std::future::Ready<merit_storage::Result<Option<Benefits>>> {
    panic!("this read must be served from the cache, not the database")
}

/// A key prefix of its own on the shared Redis. Its keys are deleted when it is dropped,
/// also when the test fails; [`SharedPrefix::finish`] also checks none is left.
pub(crate) struct SharedPrefix(String);

impl SharedPrefix {
    fn new() -> Self {
        Self(fresh_prefix())
    }

    pub(crate) fn finish(self) {
        delete_keys(&self.0).expect("redis-cli runs (redis-tools must be installed)");
        assert_eq!(
            delete_keys(&self.0).as_deref(),
            Some("0"),
            "keys under {} are left behind",
            self.0
        );
    }
}

/// The start of a test on the shared Redis: logs, a prefix of its own, an empty database.
pub(crate) fn shared_start() -> (SharedPrefix, Db) {
    init_logs();
    (SharedPrefix::new(), Db::default())
}

/// Node `node`'s cache on the shared Redis, under `prefix`.
pub(crate) async fn on_shared(prefix: &str, node: &str) -> TieredCache {
    TieredCache::with_redis(config(prefix, node), &redis_url()).await
}

/// Two caches on the shared Redis, named `names`, over a database in which user `n` holds
/// `bps`: the prefix, the database, the user's key and the caches.
pub(crate) async fn two_on_shared(
    n: u8,
    bps: u32,
    names: [&str; 2],
) -> (SharedPrefix, Db, CacheKey, [TieredCache; 2]) {
    let (prefix, db) = shared_start();
    let key = user(n);
    db.commit(&key, benefits(bps));
    let first = on_shared(&prefix, names[0]).await;
    let second = on_shared(&prefix, names[1]).await;
    (prefix, db, key, [first, second])
}

impl std::ops::Deref for SharedPrefix {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for SharedPrefix {
    fn drop(&mut self) {
        let _ = delete_keys(&self.0);
    }
}

/// Deletes every key under `prefix` on the shared Redis; returns how many there were
/// (`None` if redis-cli failed).
fn delete_keys(prefix: &str) -> Option<String> {
    let script = "local ks = redis.call('KEYS', ARGV[1]) \
                  for _, k in ipairs(ks) do redis.call('DEL', k) end return #ks";
    let out = Command::new("redis-cli")
        .args([
            "-u",
            &redis_url(),
            "EVAL",
            script,
            "0",
            &format!("{prefix}*"),
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
