//! Handing a shard over between two consumers keeps per-key order. The giving consumer
//! acks what it committed, releases what it took but did not dispatch, and drops its
//! receiver; the consumer waiting on the queue (single active consumer) then gets the
//! released deliveries first, in their order, before anything published later.
//!
//! This pins the broker behaviour the handover relies on: ending the subscription by
//! closing its channel returns the unsettled deliveries and activates the next consumer in
//! one step. Cancelling the consumer instead (what dropping a lapin consumer does) makes
//! the next consumer active while the old one still holds its deliveries, so newer
//! messages overtake them.

mod common;

use std::time::Duration;

use merit_mailbox::{Outgoing, ShardId, Transport};
use merit_messages::ActorKind;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_released_subscription_returns_its_deliveries_ahead_of_newer_ones() {
    let vhost = common::Vhost::create();
    let giver = common::declared(&vhost, 1).await;
    let taker = common::connect(&vhost, 1).await;
    let shard = ShardId::new(ActorKind::User, 0);
    let messages = |range: std::ops::Range<u64>| -> Vec<Outgoing> {
        range
            .map(|seq| Outgoing::from_envelope(&common::unlock(1, seq)))
            .collect()
    };

    giver.publish(messages(0..20)).await.expect("published");
    // A prefetch of 20: the giver holds the first 20, and what is published next stays in
    // the queue, free to overtake them if the queue changed owners before their return.
    let mut from_giver = giver.consume(shard, 20).await.expect("consuming");
    let taken = common::take(&mut from_giver, 20, WAIT).await;
    // The next owner subscribes while the giver is active: it waits.
    let mut from_taker = taker.consume(shard, 100).await.expect("consuming");
    giver.publish(messages(20..30)).await.expect("published");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), from_taker.recv())
            .await
            .is_err(),
        "the waiting consumer got a delivery while the giver was active"
    );

    // The giver committed the first 5; it releases the rest and lets the shard go.
    let mut taken = taken.into_iter();
    for d in taken.by_ref().take(5) {
        d.ack().await.expect("ack");
    }
    taken.for_each(merit_mailbox::Delivery::release);
    from_giver.close();
    while let Ok(d) = from_giver.try_recv() {
        d.release();
    }
    drop(from_giver);

    let got = common::take(&mut from_taker, 25, WAIT).await;
    let seqs: Vec<u64> = got.iter().map(|d| common::unlock_of(d).1).collect();
    assert_eq!(
        seqs,
        (5..30).collect::<Vec<_>>(),
        "the released deliveries come first and in order, then the newer ones"
    );
    for d in got {
        d.ack().await.expect("ack");
    }
    assert!(
        tokio::time::timeout(Duration::from_secs(1), from_taker.recv())
            .await
            .is_err(),
        "nothing delivered twice"
    );
}
