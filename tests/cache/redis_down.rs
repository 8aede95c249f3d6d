//! Redis unreachable from the start, killed and restarted mid-test, and hung.

use std::time::Duration;

use merit_storage::{StorageError, TieredCache};

use crate::{
    common::{eventually, free_port, OwnRedis},
    harness::{benefits, config, fresh_prefix, get, init_logs, must_not_load, user, Benefits, Db},
};

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
