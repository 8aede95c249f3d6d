//! The RabbitMQ transport's topology, sharding and confirmed publishing, against the real
//! broker (one vhost per test).

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use lapin::{
    options::{ExchangeBindOptions, ExchangeDeclareOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
    Connection, ConnectionProperties, ExchangeKind,
};
use merit_mailbox::{Outgoing, ShardId, Topology, Transport};
use merit_messages::ActorKind;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn declaring_twice_is_idempotent_and_every_queue_exists() {
    let vhost = common::Vhost::create();
    let t = common::connect(&vhost, 3).await;
    assert!(t.is_connected().await);
    assert!(
        t.queue_depths().await.is_err(),
        "queues exist before declare"
    );
    t.declare().await.expect("first declare");
    t.declare().await.expect("second declare");

    let depths = t.queue_depths().await.expect("depths");
    let names: Vec<&str> = depths.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec![];
    for kind in ["user", "proposal", "nft"] {
        for i in 0..3 {
            expected.push(format!("merit.{kind}.{i}"));
        }
    }
    expected.push("merit.dlq".into());
    expected.push("merit.unrouted".into());
    assert_eq!(names, expected);
    assert!(depths.iter().all(|(_, d)| *d == 0), "{depths:?}");

    // A transport that declared again on a live topology still publishes and routes.
    t.publish(vec![Outgoing::from_envelope(&common::unlock(1, 0))])
        .await
        .expect("published");
    let user_depth = common::sum(&common::depths(&t).await, "merit.user.");
    assert_eq!(user_depth, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_missing_shard_queue_is_read_from_the_broker_s_not_found() {
    let vhost = common::Vhost::create();
    let t = common::connect(&vhost, 3).await;
    t.declare().await.expect("declare");
    // Probing stops at the first queue the broker answers 404 NOT_FOUND for.
    let indexes = |queues: Vec<merit_mailbox::ShardQueue>| -> Vec<u16> {
        queues.iter().map(|q| q.index).collect()
    };
    let found = t.shard_queues(ActorKind::User).await.expect("shard queues");
    assert_eq!(indexes(found), vec![0, 1, 2]);
    t.delete_unused_empty_queue("merit.user.9")
        .await
        .expect("a missing queue is nothing to delete");
    t.delete_unused_empty_queue("merit.user.2")
        .await
        .expect("an empty queue is deleted");
    let found = t.shard_queues(ActorKind::User).await.expect("shard queues");
    assert_eq!(indexes(found), vec![0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn every_message_for_one_key_lands_in_one_shard_in_publish_order() {
    const KEYS: u32 = 200;
    const PER_KEY: u64 = 5;
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 4).await;

    // Interleave keys: seq s of every key, then seq s+1 of every key, …
    let batch: Vec<Outgoing> = (0..PER_KEY)
        .flat_map(|seq| (0..KEYS).map(move |k| Outgoing::from_envelope(&common::unlock(k, seq))))
        .collect();
    assert_eq!(batch.len(), 1000);
    t.publish(batch).await.expect("all confirmed");

    let mut shard_of: HashMap<String, ShardId> = HashMap::new();
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut received = 0;
    // Depths count ready messages only, so read them all before consuming.
    let depths = common::depths(&t).await;
    for shard in Topology::new(4).shards_of(ActorKind::User) {
        let depth = depths[&format!("merit.{shard}")];
        let mut rx = t.consume(shard, 100).await.expect("consuming");
        for _ in 0..depth {
            let d = common::take(&mut rx, 1, WAIT).await.remove(0);
            assert_eq!(d.shard, shard);
            let (key, seq) = common::unlock_of(&d);
            assert_eq!(d.routing_key_for(ActorKind::User), Some(key.as_str()));
            let first = *shard_of.entry(key.clone()).or_insert(shard);
            assert_eq!(first, shard, "key {key} seen in {first} and {shard}");
            seqs.entry(key).or_default().push(seq);
            d.ack().await.expect("acked");
            received += 1;
        }
        common::assert_nothing(&mut rx, Duration::from_millis(200)).await;
    }
    assert_eq!(received, 1000);
    assert_eq!(seqs.len(), KEYS as usize);
    for (key, s) in &seqs {
        assert_eq!(s, &(0..PER_KEY).collect::<Vec<_>>(), "order of {key}");
    }
    let used: HashSet<ShardId> = shard_of.values().copied().collect();
    assert!(used.len() > 1, "200 keys all hashed to one shard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_batch_of_5000_is_confirmed_and_every_message_arrives() {
    const N: u32 = 5000;
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 4).await;
    let batch: Vec<Outgoing> = (0..N)
        .map(|i| Outgoing::from_envelope(&common::unlock(i % 500, u64::from(i / 500))))
        .collect();
    let ids: HashSet<String> = batch.iter().map(|m| m.message_id.clone()).collect();
    t.publish(batch).await.expect("all 5000 confirmed");

    // Confirmed means stored: the depths add up at once.
    let stored = common::sum(&common::depths(&t).await, "merit.user.");
    assert_eq!(stored, u64::from(N));

    let mut seen = HashSet::new();
    let mut streams = Vec::new();
    for shard in Topology::new(4).shards_of(ActorKind::User) {
        streams.push(t.consume(shard, 200).await.expect("consuming"));
    }
    let mut handles = Vec::new();
    for mut rx in streams {
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
                got.push(d.message_id.clone().expect("message id"));
                d.ack().await.expect("acked");
            }
            got
        }));
    }
    for h in handles {
        for id in h.await.expect("consumer task") {
            assert!(seen.insert(id), "duplicate delivery without a reconnect");
        }
    }
    assert_eq!(seen, ids);
}

/// Declares the topology an earlier release left on `vhost`: a dead-letter queue without a
/// length bound, a shard queue without a delivery limit and dead-letter target, and a
/// binding that lets `user.holdings.changed` in through the producers' exchange.
async fn declare_an_earlier_release(vhost: &common::Vhost) -> Connection {
    let conn = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    ch.queue_declare(
        "merit.dlq".into(),
        QueueDeclareOptions::durable(),
        quorum.clone(),
    )
    .await
    .expect("an unbounded DLQ, as before");
    let mut shard = quorum;
    shard.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    ch.queue_declare("merit.user.0".into(), QueueDeclareOptions::durable(), shard)
        .await
        .expect("a shard queue without a delivery limit, as before");
    let events = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        "merit.events".into(),
        ExchangeKind::Topic,
        events,
        to_unrouted(),
    )
    .await
    .expect("events");
    let gate = ExchangeDeclareOptions {
        durable: true,
        internal: true,
        ..ExchangeDeclareOptions::default()
    };
    ch.exchange_declare(
        "merit.user.gate".into(),
        ExchangeKind::Headers,
        gate,
        to_unrouted(),
    )
    .await
    .expect("gate");
    ch.exchange_bind(
        "merit.user.gate".into(),
        "merit.events".into(),
        "user.holdings.changed".into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("the old binding");
    conn
}

/// Exchange arguments sending what an exchange cannot route to `merit.unrouted`.
fn to_unrouted() -> FieldTable {
    let mut a = FieldTable::default();
    a.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString("merit.unrouted".into()),
    );
    a
}

/// Upgrading over a topology an earlier release declared: its dead-letter queue without a
/// length bound is kept, and so is a shard queue without a delivery limit and dead-letter
/// target (the broker refuses changed arguments; the node warns and goes on), and its
/// bindings that let merit's own types in through the producers' exchange are
/// removed, so a producer's `user.holdings.changed` reaches no shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn declaring_over_an_earlier_release_keeps_its_dlq_and_closes_the_producers_door() {
    let vhost = common::Vhost::create();
    let conn = declare_an_earlier_release(&vhost).await;

    let t = common::connect(&vhost, 1).await;
    t.declare()
        .await
        .expect("declare over the earlier topology");
    t.declare().await.expect("and again");
    let mut forged = Outgoing::new("user.holdings.changed", "forged-1", "{}")
        .with_header("merit-user", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed");
    forged.origin = merit_messages::Origin::Producer;
    t.publish(vec![forged]).await.expect("confirmed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let depths = common::depths(&t).await;
    assert_eq!(depths["merit.user.0"], 0, "{depths:?}");
    assert_eq!(depths["merit.unrouted"], 1, "{depths:?}");
    assert!(depths.contains_key("merit.dlq"));
    drop(conn);
    drop(vhost);
}
