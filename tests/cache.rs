//! The tiered cache against real Redis: read-through across nodes, write-through and
//! precise invalidation over pub/sub, Redis unreachable from the start, Redis killed and
//! restarted mid-test, and the slow-fill race.
//!
//! The shared Redis is `MERIT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); every
//! test uses its own key prefix and deletes its keys at the end (also when it fails). The restart test never
//! touches the shared server: it runs a throwaway `redis-server` of its own.

mod common;

use std::{
    collections::HashMap,
    process::Command,
    sync::{
        atomic::{AtomicU64, Ordering::SeqCst},
        Arc, Mutex,
    },
    time::Duration,
};

use common::{eventually, free_port, redis_url, OwnRedis};
use merit_storage::{CacheConfig, CacheKey, StorageError, TieredCache};
use serde::{Deserialize, Serialize};
use tokio::sync::Barrier;
use uuid::Uuid;

fn init_logs() {
    common::init_test_logs("merit_storage::cache=info");
}

/// A key prefix no other test (or run) shares.
fn fresh_prefix() -> String {
    format!("merit-test-{}:", Uuid::new_v4().simple())
}

fn config(prefix: &str, node: &str) -> CacheConfig {
    CacheConfig {
        l1_capacity: 10_000,
        // Long enough that no test passes because an entry expired.
        ttl: Duration::from_secs(120),
        key_prefix: prefix.to_string(),
        node_id: node.to_string(),
    }
}

fn user(n: u8) -> CacheKey {
    CacheKey::Benefits(format!("0x{n:040x}"))
}

/// What the cache holds for a user in these tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Benefits {
    vote_multiplier_bps: u32,
    nfts: Vec<u64>,
}

fn benefits(bps: u32) -> Benefits {
    Benefits {
        vote_multiplier_bps: bps,
        nfts: vec![u64::from(bps)],
    }
}

/// The database behind the cache: committed values and a count of reads.
#[derive(Clone, Default)]
struct Db {
    rows: Arc<Mutex<HashMap<CacheKey, Benefits>>>,
    reads: Arc<AtomicU64>,
}

impl Db {
    fn commit(&self, key: &CacheKey, value: Benefits) {
        self.rows
            .lock()
            .expect("db lock")
            .insert(key.clone(), value);
    }

    fn read(&self, key: &CacheKey) -> Option<Benefits> {
        self.reads.fetch_add(1, SeqCst);
        self.rows.lock().expect("db lock").get(key).cloned()
    }

    fn reads(&self) -> u64 {
        self.reads.load(SeqCst)
    }

    /// The loader a node passes to `get_or_load`.
    fn loader(
        &self,
        key: &CacheKey,
    ) -> impl FnOnce() -> std::future::Ready<merit_storage::Result<Option<Benefits>>> {
        let (db, key) = (self.clone(), key.clone());
        move || std::future::ready(Ok(db.read(&key)))
    }
}

async fn get(cache: &TieredCache, db: &Db, key: &CacheKey) -> Option<Benefits> {
    cache
        .get_or_load(key, db.loader(key))
        .await
        .expect("the cache never fails when the database does not")
}

/// A loader for reads that must be served by a cache tier.
fn must_not_load() -> std::future::Ready<merit_storage::Result<Option<Benefits>>> {
    panic!("this read must be served from the cache, not the database")
}

/// A key prefix of its own on the shared Redis. Its keys are deleted when it is dropped,
/// also when the test fails; [`SharedPrefix::finish`] also checks none is left.
struct SharedPrefix(String);

impl SharedPrefix {
    fn new() -> Self {
        Self(fresh_prefix())
    }

    fn finish(self) {
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
fn shared_start() -> (SharedPrefix, Db) {
    init_logs();
    (SharedPrefix::new(), Db::default())
}

/// Node `node`'s cache on the shared Redis, under `prefix`.
async fn on_shared(prefix: &str, node: &str) -> TieredCache {
    TieredCache::with_redis(config(prefix, node), &redis_url()).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn read_through_fills_l1_and_l2_for_other_nodes() {
    let (prefix, db) = shared_start();
    let key = user(1);
    db.commit(&key, benefits(15_000));
    let a = on_shared(&prefix, "a").await;
    let b = on_shared(&prefix, "b").await;
    assert!(
        a.stats().redis_up && b.stats().redis_up,
        "the shared Redis is up"
    );

    assert_eq!(get(&a, &db, &key).await, Some(benefits(15_000)));
    assert_eq!(db.reads(), 1, "the first read loads");
    let first = a.stats();
    assert_eq!((first.l1_misses, first.l2_misses, first.loads), (1, 1, 1));

    let again = a.get_or_load(&key, must_not_load).await.expect("hit");
    assert_eq!(again, Some(benefits(15_000)));
    assert_eq!(a.stats().l1_hits, 1, "the second read is an L1 hit");

    let on_b = b.get_or_load(&key, must_not_load).await.expect("hit");
    assert_eq!(on_b, Some(benefits(15_000)));
    let b_stats = b.stats();
    assert_eq!((b_stats.l2_hits, b_stats.loads), (1, 0), "node b reads L2");
    let on_b = b.get_or_load(&key, must_not_load).await.expect("hit");
    assert_eq!(on_b, Some(benefits(15_000)));
    assert_eq!(b.stats().l1_hits, 1, "and then holds it in L1");
    assert_eq!(db.reads(), 1);

    drop((a, b));
    prefix.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_put_on_one_node_is_read_on_another_at_once() {
    let (prefix, db) = shared_start();
    let key = user(2);
    db.commit(&key, benefits(10_000));
    let a = on_shared(&prefix, "a").await;
    let b = on_shared(&prefix, "b").await;
    assert_eq!(get(&b, &db, &key).await, Some(benefits(10_000)));
    assert_eq!(get(&b, &db, &key).await, Some(benefits(10_000)));
    assert_eq!(b.stats().l1_hits, 1, "b holds the old value in L1");

    db.commit(&key, benefits(20_000));
    a.put(&key, &benefits(20_000)).await;
    assert_eq!(a.stats().invalidations_sent, 1);
    assert_eq!(
        a.get_or_load(&key, must_not_load).await.expect("hit"),
        Some(benefits(20_000)),
        "the writer holds the new value"
    );

    let reads_before = db.reads();
    let b2 = b.clone();
    eventually(2, "node b reads the value node a put", || {
        let b = b2.clone();
        async move {
            let value = b.get_or_load(&user(2), must_not_load).await.expect("hit");
            value == Some(benefits(20_000))
        }
    })
    .await;
    assert_eq!(
        db.reads(),
        reads_before,
        "b got the new value from L2, not the database"
    );
    assert!(b.stats().invalidations_received >= 1);

    drop((a, b, b2));
    prefix.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn caches_given_the_same_node_id_still_hear_each_other() {
    let (prefix, db) = shared_start();
    let key = user(13);
    db.commit(&key, benefits(10_000));
    let first = on_shared(&prefix, "same").await;
    let second = on_shared(&prefix, "same").await;
    get(&second, &db, &key).await;

    db.commit(&key, benefits(20_000));
    first.put(&key, &benefits(20_000)).await;
    let second2 = second.clone();
    eventually(2, "the second cache drops its copy", || {
        let second = second2.clone();
        async move {
            second
                .get_or_load(&user(13), must_not_load)
                .await
                .expect("cached")
                == Some(benefits(20_000))
        }
    })
    .await;
    assert_eq!(
        first.stats().invalidations_received,
        0,
        "a cache skips its own messages"
    );

    drop((first, second, second2));
    prefix.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn invalidate_drops_exactly_the_named_keys_on_other_nodes() {
    let (prefix, db) = shared_start();
    let (changed, untouched) = (user(3), user(4));
    db.commit(&changed, benefits(10_000));
    db.commit(&untouched, benefits(11_000));
    let a = on_shared(&prefix, "a").await;
    let b = on_shared(&prefix, "b").await;
    for key in [&changed, &untouched] {
        get(&b, &db, key).await;
    }

    db.commit(&changed, benefits(30_000));
    a.invalidate(std::slice::from_ref(&changed)).await;

    let (b2, db2) = (b.clone(), db.clone());
    eventually(2, "node b drops the invalidated key", || {
        let (b, db) = (b2.clone(), db2.clone());
        async move { get(&b, &db, &user(3)).await == Some(benefits(30_000)) }
    })
    .await;
    assert!(b.stats().invalidations_received >= 1);

    let hits = b.stats().l1_hits;
    let value = b.get_or_load(&untouched, must_not_load).await.expect("hit");
    assert_eq!(value, Some(benefits(11_000)));
    assert_eq!(
        b.stats().l1_hits,
        hits + 1,
        "the other key is still an L1 hit"
    );

    drop((a, b, b2));
    prefix.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_degrades_to_l1_and_the_database() {
    init_logs();
    let prefix = fresh_prefix();
    let db = Db::default();
    let key = user(5);
    db.commit(&key, benefits(12_000));
    let cache = TieredCache::with_redis(config(&prefix, "alone"), "redis://127.0.0.1:1").await;
    assert!(!cache.stats().redis_up);

    assert_eq!(get(&cache, &db, &key).await, Some(benefits(12_000)));
    assert_eq!(get(&cache, &db, &key).await, Some(benefits(12_000)));
    assert_eq!(db.reads(), 1, "L1 still serves repeated reads");

    db.commit(&key, benefits(13_000));
    cache.put(&key, &benefits(13_000)).await;
    assert_eq!(get(&cache, &db, &key).await, Some(benefits(13_000)));
    cache.invalidate(std::slice::from_ref(&key)).await;
    assert_eq!(get(&cache, &db, &key).await, Some(benefits(13_000)));
    assert_eq!(db.reads(), 2, "the invalidated key was loaded again");

    let missing = cache
        .get_or_load::<Benefits, _, _>(&user(99), || async { Ok(None) })
        .await
        .expect("no error");
    assert_eq!(missing, None);
    let failing = cache
        .get_or_load::<Benefits, _, _>(&user(98), || async { Err(StorageError::Closed("db")) })
        .await;
    assert!(
        matches!(failing, Err(StorageError::Closed("db"))),
        "only the loader's own errors reach the caller"
    );

    let stats = cache.stats();
    assert!(!stats.redis_up);
    assert!(stats.l2_errors >= 4, "L2 was never used: {stats:?}");
    assert_eq!((stats.l2_hits, stats.l2_misses), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_and_coming_back_is_survived_and_used_again() {
    init_logs();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let server = OwnRedis::start(port);
    let prefix = fresh_prefix();
    let db = Db::default();
    let (k1, k2, k3) = (user(6), user(7), user(8));
    for key in [&k1, &k2, &k3] {
        db.commit(key, benefits(10_000));
    }
    let a = TieredCache::with_redis(config(&prefix, "a"), &url).await;
    let b = TieredCache::with_redis(config(&prefix, "b"), &url).await;
    assert!(a.stats().redis_up && b.stats().redis_up);
    get(&a, &db, &k1).await;
    assert_eq!(get(&b, &db, &k1).await, Some(benefits(10_000)));
    assert_eq!(b.stats().l2_hits, 1);

    server.kill();
    let (a2, b2) = (a.clone(), b.clone());
    eventually(5, "both nodes see Redis down", || {
        std::future::ready(!a2.stats().redis_up && !b2.stats().redis_up)
    })
    .await;

    // Reads stay right, from L1 and the database.
    let errors = a.stats().l2_errors;
    assert_eq!(get(&a, &db, &k2).await, Some(benefits(10_000)));
    assert!(
        a.stats().l2_errors > errors,
        "the skipped L2 read is counted"
    );
    // A writer node commits and puts while Redis is down, then goes away before Redis
    // returns (it crashed): its replay never happens, so only b's clear on resubscribe
    // can rid b of its copy.
    let writer = TieredCache::with_redis(config(&prefix, "writer"), &url).await;
    db.commit(&k1, benefits(20_000));
    writer.put(&k1, &benefits(20_000)).await;
    assert_eq!(get(&writer, &db, &k1).await, Some(benefits(20_000)));
    drop(writer);
    let clears_before = b.stats().l1_clears;

    let _server = OwnRedis::start(port);
    eventually(10, "both nodes use Redis again", || {
        std::future::ready(a2.stats().redis_up && b2.stats().redis_up)
    })
    .await;
    assert!(
        b.stats().l1_clears > clears_before,
        "b cleared its L1 when it resubscribed"
    );
    assert_eq!(
        get(&b, &db, &k1).await,
        Some(benefits(20_000)),
        "b missed the write while Redis was down, and does not serve its old copy"
    );

    // L2 is used again: a fills it, b reads it without loading.
    get(&a, &db, &k3).await;
    let (b_hits, reads) = (b.stats().l2_hits, db.reads());
    assert_eq!(get(&b, &db, &k3).await, Some(benefits(10_000)));
    assert_eq!(b.stats().l2_hits, b_hits + 1);
    assert_eq!(db.reads(), reads, "b's read was an L2 hit");

    // And the new subscription carries invalidations: a's put reaches b's L1.
    db.commit(&k3, benefits(40_000));
    a.put(&k3, &benefits(40_000)).await;
    let b3 = b.clone();
    eventually(2, "b sees a's put after the restart", || {
        let b = b3.clone();
        async move {
            b.get_or_load(&user(8), must_not_load)
                .await
                .expect("cached")
                == Some(benefits(40_000))
        }
    })
    .await;
    assert!(b.stats().invalidations_received >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_cannot_stall_callers() {
    init_logs();
    let port = free_port();
    let server = OwnRedis::start(port);
    let prefix = fresh_prefix();
    let db = Db::default();
    let (k1, k2) = (user(11), user(12));
    db.commit(&k1, benefits(10_000));
    db.commit(&k2, benefits(10_000));
    let a =
        TieredCache::with_redis(config(&prefix, "a"), &format!("redis://127.0.0.1:{port}")).await;
    assert!(a.stats().redis_up);
    get(&a, &db, &k1).await;

    server.signal("-STOP");
    // Bounded: each Redis operation gives up after 250 ms, so a read takes well under this.
    let bound = Duration::from_secs(2);
    let read = tokio::time::timeout(bound, get(&a, &db, &k2)).await;
    assert_eq!(
        read.expect("a hung Redis stalled a read"),
        Some(benefits(10_000))
    );
    let a2 = a.clone();
    eventually(5, "the hung Redis is marked down", || {
        std::future::ready(!a2.stats().redis_up)
    })
    .await;
    db.commit(&k1, benefits(20_000));
    tokio::time::timeout(bound, a.put(&k1, &benefits(20_000)))
        .await
        .expect("a hung Redis stalled a write");
    assert_eq!(get(&a, &db, &k1).await, Some(benefits(20_000)));
    assert!(a.stats().l2_errors >= 2);

    server.signal("-CONT");
    eventually(10, "Redis is used again once it answers", || {
        std::future::ready(a2.stats().redis_up)
    })
    .await;
    // The write made during the hang was replayed as an invalidation: L2 lost the old value.
    let fresh = TieredCache::with_redis(
        config(&prefix, "fresh"),
        &format!("redis://127.0.0.1:{port}"),
    )
    .await;
    assert_eq!(get(&fresh, &db, &k1).await, Some(benefits(20_000)));
}

/// Reads `key` through `reader` with a loader that reads the database, then waits while
/// `write` (a commit and its cache write) runs, then returns what it read — the slow
/// read-through that must not overwrite the write. Returns what the slow read returned.
async fn read_racing(
    reader: &TieredCache,
    db: &Db,
    key: &CacheKey,
    write: impl std::future::Future<Output = ()>,
) -> Option<Benefits> {
    let read_done = Arc::new(Barrier::new(2));
    let written = Arc::new(Barrier::new(2));
    let slow = {
        let (reader, db, key) = (reader.clone(), db.clone(), key.clone());
        let (read_done, written) = (read_done.clone(), written.clone());
        tokio::spawn(async move {
            let row = key.clone();
            reader
                .get_or_load(&key, || async move {
                    let old = db.read(&row);
                    read_done.wait().await;
                    written.wait().await;
                    Ok(old)
                })
                .await
        })
    };
    read_done.wait().await;
    write.await;
    written.wait().await;
    slow.await.expect("reader task").expect("loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_slow_read_does_not_overwrite_a_newer_write() {
    let (prefix, db) = shared_start();
    let (key, other, offline) = (user(9), user(10), user(14));
    for k in [&key, &other, &offline] {
        db.commit(k, benefits(10_000));
    }
    let a = on_shared(&prefix, "a").await;
    let b = on_shared(&prefix, "b").await;
    let c = on_shared(&prefix, "c").await;

    // On one node: a's own put lands while a's read of the old row is in flight.
    let slow = read_racing(&a, &db, &key, async {
        db.commit(&key, benefits(20_000));
        a.put(&key, &benefits(20_000)).await;
    })
    .await;
    assert_eq!(
        slow,
        Some(benefits(10_000)),
        "the slow reader gets what it read"
    );
    assert_eq!(
        a.get_or_load(&key, must_not_load).await.expect("hit"),
        Some(benefits(20_000)),
        "a's L1 keeps the newer value"
    );
    assert_eq!(
        c.get_or_load(&key, must_not_load).await.expect("hit"),
        Some(benefits(20_000)),
        "L2 keeps the newer value"
    );

    // Across nodes: b reads the old row, a invalidates, then b's fill would land.
    let slow = read_racing(&b, &db, &other, async {
        db.commit(&other, benefits(30_000));
        a.invalidate(std::slice::from_ref(&other)).await;
    })
    .await;
    assert_eq!(slow, Some(benefits(10_000)));
    // No waiting for pub/sub: the fill must have been refused already.
    assert_eq!(
        get(&b, &db, &other).await,
        Some(benefits(30_000)),
        "b's L1 is not stale"
    );
    assert_eq!(
        get(&c, &db, &other).await,
        Some(benefits(30_000)),
        "L2 is not stale"
    );

    // Without Redis only the L1 guard stands between the slow fill and the write.
    let alone = TieredCache::with_redis(config(&prefix, "alone"), "redis://127.0.0.1:1").await;
    let slow = read_racing(&alone, &db, &offline, async {
        db.commit(&offline, benefits(40_000));
        alone.put(&offline, &benefits(40_000)).await;
    })
    .await;
    assert_eq!(slow, Some(benefits(10_000)));
    assert_eq!(
        alone
            .get_or_load(&offline, must_not_load)
            .await
            .expect("hit"),
        Some(benefits(40_000)),
        "the L1 keeps the newer value"
    );

    drop((a, b, c, alone));
    prefix.finish();
}
