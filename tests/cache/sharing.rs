//! Read-through across nodes, write-through and precise invalidation over pub/sub.

use crate::{
    common::eventually,
    harness::{benefits, get, must_not_load, on_shared, shared_start, two_on_shared, user},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn read_through_fills_l1_and_l2_for_other_nodes() {
    let (prefix, db, key, [a, b]) = two_on_shared(1, 15_000, ["a", "b"]).await;
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
    let (prefix, db, key, [a, b]) = two_on_shared(2, 10_000, ["a", "b"]).await;
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
    let (prefix, db, key, [first, second]) = two_on_shared(13, 10_000, ["same", "same"]).await;
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
