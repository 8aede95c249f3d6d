//! Bulk settlement against the real broker: acks in any order, with requeues and late
//! acks holding holes in the prefix, never lose, double or wrongly cover a delivery. A
//! multiple-ack that covered a requeued delivery would lose it; one that named a tag the
//! broker had already settled would close the channel, and every later ack would then be
//! a stale no-op and come back as a redelivery.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use merit_mailbox::{Outgoing, ShardId, Transport};
use merit_messages::ActorKind;
use rand::Rng;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn acks_in_any_order_with_requeues_in_between_settle_each_delivery_once() {
    const MESSAGES: u64 = 600;
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 1).await;
    let shard = ShardId::new(ActorKind::User, 0);
    let batch: Vec<Outgoing> = (0..MESSAGES)
        .map(|seq| Outgoing::from_envelope(&common::unlock((seq % 7) as u32, seq)))
        .collect();
    t.publish(batch).await.expect("published");

    let mut rx = t.consume(shard, 100).await.expect("consuming");
    // seq -> (deliveries, redelivered deliveries)
    let seen: Arc<Mutex<HashMap<u64, (u32, u32)>>> = Arc::default();
    let mut settles = Vec::new();
    let mut acked = 0;
    while acked < MESSAGES {
        let d = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {acked} of {MESSAGES} acked"))
            .expect("the delivery stream ended");
        let seq = common::unlock_of(&d).1;
        {
            let mut seen = seen.lock().expect("lock");
            let e = seen.entry(seq).or_default();
            e.0 += 1;
            e.1 += u32::from(d.redelivered);
        }
        // Every 13th message is requeued once, after a while (a hole in the prefix that
        // its own nack fills); the rest are acked after random delays (out of order), a
        // few of them much later than their neighbours.
        let requeue = seq % 13 == 5 && !d.redelivered;
        let delay = {
            let mut rng = rand::thread_rng();
            if rng.gen_ratio(1, 25) {
                rng.gen_range(50..200)
            } else {
                rng.gen_range(0..5)
            }
        };
        if !requeue {
            acked += 1;
        }
        settles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if requeue {
                d.requeue().await.expect("requeued");
            } else {
                d.ack().await.expect("acked");
            }
        }));
    }
    for s in settles {
        s.await.expect("settled");
    }

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len() as u64, MESSAGES, "every message was delivered");
    for (seq, (deliveries, redelivered)) in &seen {
        let expected = if seq % 13 == 5 { 2 } else { 1 };
        assert_eq!(
            (*deliveries, *redelivered),
            (expected, expected - 1),
            "message {seq}: a wrong multiple-ack would lose or double it"
        );
    }
    // Nothing is left unacked: a new consumer on a new channel receives nothing.
    drop(rx);
    let mut again = t.consume(shard, 100).await.expect("consuming again");
    common::assert_nothing(&mut again, Duration::from_secs(1)).await;
    let depth = t
        .queue_depths()
        .await
        .expect("depths")
        .into_iter()
        .find(|(q, _)| q == "merit.user.0")
        .map(|(_, n)| n);
    assert_eq!(depth, Some(0));
}
