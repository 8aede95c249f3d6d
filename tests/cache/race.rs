//! The slow-fill race: a slow read-through never overwrites a newer write.

use std::sync::Arc;

use merit_storage::{CacheKey, TieredCache};
use tokio::sync::Barrier;

use crate::harness::{
    benefits, config, get, must_not_load, on_shared, shared_start, user, Benefits, Db,
};

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
