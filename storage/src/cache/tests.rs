//! The cache without Redis: the L1 path, its race guard, warm-up, and a Redis that never
//! answers. (Redis-backed behaviour is tested end to end in the workspace's `tests/cache.rs`.)

use std::{
    sync::{
        atomic::{AtomicU64, Ordering::SeqCst},
        Arc,
    },
    time::Duration,
};

use tokio::sync::Barrier;

use super::*;

fn config(ttl: Duration) -> CacheConfig {
    CacheConfig {
        l1_capacity: 1_000,
        ttl,
        key_prefix: "merit-unit:".into(),
        node_id: "unit".into(),
    }
}

fn key(n: u8) -> CacheKey {
    CacheKey::Benefits(format!("0x{n:040x}"))
}

#[tokio::test]
async fn second_read_is_an_l1_hit_without_loading() {
    let cache = TieredCache::local(config(Duration::from_secs(60)));
    let loads = AtomicU64::new(0);
    for _ in 0..2 {
        let value = cache
            .get_or_load(&key(1), || async {
                loads.fetch_add(1, SeqCst);
                Ok(Some(41_u32))
            })
            .await
            .expect("loads");
        assert_eq!(value, Some(41));
    }
    assert_eq!(loads.load(SeqCst), 1);
    let stats = cache.stats();
    assert_eq!((stats.l1_hits, stats.l1_misses, stats.loads), (1, 1, 1));
    assert_eq!(stats.l2_errors, 0, "a local cache has no L2 to fail");
    assert!(!stats.redis_up);
}

#[tokio::test]
async fn absent_records_and_loader_errors_are_not_cached() {
    let cache = TieredCache::local(config(Duration::from_secs(60)));
    let none = cache
        .get_or_load::<u32, _, _>(&key(1), || async { Ok(None) })
        .await
        .expect("loads");
    assert_eq!(none, None);
    let err = cache
        .get_or_load::<u32, _, _>(&key(1), || async { Err(StorageError::Closed("db")) })
        .await;
    assert!(matches!(err, Err(StorageError::Closed("db"))));
    let value = cache
        .get_or_load(&key(1), || async { Ok(Some(5_u32)) })
        .await
        .expect("loads");
    assert_eq!(value, Some(5));
    assert_eq!(cache.stats().loads, 3);
}

#[tokio::test]
async fn put_replaces_and_invalidate_drops_only_the_named_keys() {
    let cache = TieredCache::local(config(Duration::from_secs(60)));
    for n in [1, 2] {
        cache
            .get_or_load(&key(n), || async { Ok(Some(1_u32)) })
            .await
            .expect("loads");
    }
    cache.put(&key(1), &2_u32).await;
    let value = cache
        .get_or_load::<u32, _, _>(&key(1), || async { panic!("the put value is in L1") })
        .await
        .expect("hit");
    assert_eq!(value, Some(2));

    cache.invalidate(&[key(1)]).await;
    let value = cache
        .get_or_load(&key(1), || async { Ok(Some(3_u32)) })
        .await
        .expect("loads");
    assert_eq!(value, Some(3), "the invalidated key is loaded again");
    let value = cache
        .get_or_load::<u32, _, _>(&key(2), || async { panic!("key 2 was not invalidated") })
        .await
        .expect("hit");
    assert_eq!(value, Some(1));
}

#[tokio::test]
async fn a_slow_load_does_not_overwrite_a_put_made_meanwhile() {
    let cache = TieredCache::local(config(Duration::from_secs(60)));
    let read_done = Arc::new(Barrier::new(2));
    let put_done = Arc::new(Barrier::new(2));
    let slow = {
        let (cache, read_done, put_done) = (cache.clone(), read_done.clone(), put_done.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key(1), || async move {
                    let old = 1_u32; // read from the database before the write committed
                    read_done.wait().await;
                    put_done.wait().await;
                    Ok(Some(old))
                })
                .await
        })
    };
    read_done.wait().await;
    cache.put(&key(1), &2_u32).await;
    put_done.wait().await;
    let slow_value = slow.await.expect("task").expect("loads");
    assert_eq!(slow_value, Some(1), "the slow reader gets what it read");
    let value = cache
        .get_or_load::<u32, _, _>(&key(1), || async { panic!("the put value must be in L1") })
        .await
        .expect("hit");
    assert_eq!(value, Some(2));
}

#[tokio::test]
async fn entries_expire_after_the_ttl() {
    let cache = TieredCache::local(config(Duration::from_millis(100)));
    let loads = AtomicU64::new(0);
    let load = || async {
        loads.fetch_add(1, SeqCst);
        Ok(Some(1_u32))
    };
    cache.get_or_load(&key(1), load).await.expect("loads");
    tokio::time::sleep(Duration::from_millis(300)).await;
    cache.get_or_load(&key(1), load).await.expect("loads");
    assert_eq!(loads.load(SeqCst), 2);
}

#[tokio::test]
async fn warm_loads_every_key_once_and_reports_failures() {
    let cache = TieredCache::local(config(Duration::from_secs(60)));
    let keys: Vec<CacheKey> = (0..40).map(key).collect();
    let report = cache
        .warm(keys.clone(), |k| async move {
            match k {
                CacheKey::Benefits(a) if a.ends_with("00") => Ok(None),
                CacheKey::Benefits(a) if a.ends_with("01") => Err(StorageError::Closed("db")),
                _ => Ok(Some(7_u32)),
            }
        })
        .await;
    assert_eq!(
        (report.cached, report.absent, report.failed.len()),
        (38, 1, 1)
    );
    for k in &keys[2..] {
        let value = cache
            .get_or_load::<u32, _, _>(k, || async { panic!("warmed keys are in L1") })
            .await
            .expect("hit");
        assert_eq!(value, Some(7));
    }
}

#[tokio::test]
async fn unreachable_redis_degrades_to_the_loader_without_errors() {
    let cache =
        TieredCache::with_redis(config(Duration::from_secs(60)), "redis://127.0.0.1:1").await;
    let value = cache
        .get_or_load(&key(1), || async { Ok(Some(9_u32)) })
        .await
        .expect("never a redis error");
    assert_eq!(value, Some(9));
    cache.put(&key(1), &10_u32).await;
    cache.invalidate(&[key(2)]).await;
    let stats = cache.stats();
    assert!(!stats.redis_up);
    assert_eq!(stats.loads, 1);
    assert!(
        stats.l2_errors >= 3,
        "lookup, put and invalidate each count: {stats:?}"
    );
}

#[tokio::test]
async fn a_malformed_url_gives_a_local_cache() {
    let cache = TieredCache::with_redis(config(Duration::from_secs(60)), "not a url").await;
    let value = cache
        .get_or_load(&key(1), || async { Ok(Some(1_u32)) })
        .await
        .expect("loads");
    assert_eq!(value, Some(1));
    assert!(!cache.stats().redis_up);
}
