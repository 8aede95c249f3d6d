//! Recovery on RabbitMQ: the broker drops every connection of the test's vhost while
//! messages flow; the transport reconnects by itself, publishing resumes, consumers
//! resubscribe, every message is consumed, and settling a delivery from before the drop
//! is a harmless no-op.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use merit_mailbox::{
    Delivery, Error, Outgoing, RabbitOptions, RabbitTransport, ShardId, Topology, Transport,
};
use merit_messages::ActorKind;
use tokio::sync::mpsc::error::TryRecvError;

#[derive(Default)]
struct Seen {
    /// message id → (deliveries, highest delivery_count, any redelivered)
    by_id: HashMap<String, (u32, u32, bool)>,
    held: Option<Delivery>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock()
        .expect("no test task panicked while holding the lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn the_transport_recovers_from_dropped_connections_and_loses_nothing() {
    let vhost = common::Vhost::create();
    let t = Arc::new(common::declared(&vhost, 2).await);
    assert_eq!(t.connection_generation(), Some(1));

    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriptions = Arc::new(AtomicU32::new(0));
    let consumers: Vec<_> = t
        .topology()
        .shards_of(ActorKind::User)
        .map(|shard| spawn_recording_consumer(&t, shard, &seen, &subscriptions))
        .collect();
    let (published, held_id) = publish_across_a_drop(&t, &vhost, &seen).await;

    wait_for(
        || {
            let s = lock(&seen);
            published.iter().all(|id| s.by_id.contains_key(id))
        },
        "every published message consumed",
    )
    .await;
    wait_for(
        || t.connection_generation() >= Some(2),
        "the transport to reconnect",
    )
    .await;
    assert!(t.is_connected().await);
    assert_eq!(
        subscriptions.load(Ordering::SeqCst),
        2,
        "a delivery stream ended: consumers should resubscribe inside the transport"
    );
    check_the_held_delivery_comes_back(&seen, &held_id).await;

    for c in consumers {
        c.abort();
    }
}

/// A consumer of `shard` that records every delivery in `seen`, holds the first one
/// unacked and acks the rest; it counts its subscriptions and consumes again should its
/// stream end.
fn spawn_recording_consumer(
    t: &Arc<RabbitTransport>,
    shard: ShardId,
    seen: &Arc<Mutex<Seen>>,
    subscriptions: &Arc<AtomicU32>,
) -> tokio::task::JoinHandle<()> {
    let (t, seen, subscriptions) = (t.clone(), seen.clone(), subscriptions.clone());
    tokio::spawn(async move {
        loop {
            subscriptions.fetch_add(1, Ordering::SeqCst);
            // The stream survives reconnects; should it end anyway, consume again.
            let mut rx = match t.consume(shard, 20).await {
                Ok(rx) => rx,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            while let Some(d) = rx.recv().await {
                let id = d.message_id.clone().expect("message id");
                let hold = {
                    let mut s = lock(&seen);
                    let e = s.by_id.entry(id).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(d.delivery_count);
                    e.2 |= d.redelivered;
                    s.held.is_none()
                };
                if hold {
                    lock(&seen).held = Some(d);
                } else {
                    d.ack().await.expect("an ack never fails");
                }
            }
        }
    })
}

/// Publishes 20 batches of 50; after the 5th, with a delivery held unacked, every
/// connection of the vhost is dropped, and the last 5 are published strictly after the
/// drop. Returns the published ids and the held one.
async fn publish_across_a_drop(
    t: &RabbitTransport,
    vhost: &common::Vhost,
    seen: &Mutex<Seen>,
) -> (HashSet<String>, String) {
    const BATCHES: u32 = 20;
    const PER_BATCH: u32 = 50;
    let mut published = HashSet::new();
    let mut held_id = None;
    let mut closer = None;
    for batch in 0..BATCHES {
        if batch == 5 {
            // Make sure a delivery is held unacked across the drop, then drop every
            // connection of the vhost while the next batches are being published.
            wait_for(|| lock(seen).held.is_some(), "a held delivery").await;
            held_id = lock(seen).held.as_ref().and_then(|d| d.message_id.clone());
            let vhost_name = vhost.name.clone();
            closer = Some(tokio::task::spawn_blocking(move || {
                common::rabbitmqctl(&[
                    "close_all_connections",
                    "-p",
                    &vhost_name,
                    "merit recovery test",
                ])
            }));
        }
        if batch == 15 {
            // The rest is published strictly after the drop.
            closer
                .take()
                .expect("started")
                .await
                .expect("rabbitmqctl ran");
        }
        let msgs: Vec<Outgoing> = (0..PER_BATCH)
            .map(|i| Outgoing::from_envelope(&common::unlock(i, u64::from(batch))))
            .collect();
        published.extend(msgs.iter().map(|m| m.message_id.clone()));
        t.publish(msgs)
            .await
            .expect("publish waits out the outage instead of failing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (published, held_id.expect("a delivery was held"))
}

/// The held delivery's channel died with its connection: acking it is a no-op, and the
/// broker redelivered it on the new connection.
async fn check_the_held_delivery_comes_back(seen: &Mutex<Seen>, held_id: &str) {
    let held = lock(seen).held.take().expect("still held");
    held.ack().await.expect("a stale ack returns Ok");
    wait_for(
        || lock(seen).by_id.get(held_id).is_some_and(|e| e.0 >= 2),
        "the held message redelivered",
    )
    .await;
    let (_, count, redelivered) = lock(seen).by_id[held_id];
    assert!(
        redelivered && count >= 1,
        "count {count}, redelivered {redelivered}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn publishing_waits_a_bounded_time_and_the_topology_is_redeclared_on_reconnect() {
    let vhost = common::Vhost::create();
    let options = RabbitOptions {
        op_timeout: Duration::from_secs(2),
        reconnect_max: Duration::from_millis(500),
        ..RabbitOptions::default()
    };
    let t = RabbitTransport::connect_with(&vhost.url(), Topology::new(1), options)
        .await
        .expect("connected");
    t.declare().await.expect("declared");
    let mut rx = t
        .consume(merit_mailbox::ShardId::new(ActorKind::User, 0), 10)
        .await
        .expect("consuming");

    // The vhost disappears (connections closed, new ones refused): publish gives up.
    let name = vhost.name.clone();
    tokio::task::spawn_blocking(move || common::rabbitmqctl(&["delete_vhost", &name]))
        .await
        .expect("vhost deleted");
    wait_for(
        || t.connection_generation().is_none(),
        "the loss to be noticed",
    )
    .await;
    assert!(!t.is_connected().await);
    let msg = Outgoing::from_envelope(&common::unlock(1, 0));
    match t.publish(vec![msg.clone()]).await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!("expected Unavailable after the timeout, got {other:?}"),
    }

    // It comes back empty: the transport reconnects and declares the topology again.
    let v = vhost.name.clone();
    tokio::task::spawn_blocking(move || {
        common::rabbitmqctl(&["add_vhost", &v]);
        common::rabbitmqctl(&["set_permissions", "-p", &v, "guest", ".*", ".*", ".*"]);
    })
    .await
    .expect("vhost recreated");
    wait_for(|| t.connection_generation() >= Some(2), "the reconnect").await;
    // Deleting the vhost either cancelled the consumer first (the queue was deleted: the
    // stream ended and the caller consumes again) or just dropped the connection (the
    // stream resubscribed by itself). Either way a consumer gets what is published now.
    let mut rx = match rx.try_recv() {
        Err(TryRecvError::Disconnected) => t
            .consume(merit_mailbox::ShardId::new(ActorKind::User, 0), 10)
            .await
            .expect("the queue exists again"),
        Err(TryRecvError::Empty) => rx,
        Ok(d) => panic!("unexpected delivery {d:?}"),
    };
    t.publish(vec![msg.clone()])
        .await
        .expect("published after recovery");
    let d = common::take(&mut rx, 1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(d.message_id.as_ref(), Some(&msg.message_id));
    d.ack().await.expect("acked");
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_list_of_broker_addresses_goes_past_a_dead_one_on_connect_and_on_reconnect() {
    let vhost = common::Vhost::create();
    // The first address refuses connections (nothing listens there); the second is the
    // machine's broker.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let dead_port = dead.local_addr().expect("addr").port();
    drop(dead);
    let list = format!(
        "amqp://guest:guest@127.0.0.1:{dead_port}/{},{}",
        vhost.name,
        vhost.url()
    );
    let options = RabbitOptions {
        reconnect_max: Duration::from_millis(500),
        ..RabbitOptions::default()
    };
    let t = RabbitTransport::connect_with(&list, Topology::new(1), options)
        .await
        .expect("connected through the second address");
    assert_eq!(
        t.connected_address().as_deref(),
        Some(format!("amqp://***@127.0.0.1:5672/{}", vhost.name).as_str())
    );
    t.declare().await.expect("declared");
    let mut rx = t
        .consume(merit_mailbox::ShardId::new(ActorKind::User, 0), 10)
        .await
        .expect("consuming");

    // The broker drops the connection: the reconnect tries the dead address first (the
    // one after the address it lost), then comes back through the live one.
    vhost.close_connections();
    wait_for(|| t.connection_generation() >= Some(2), "the reconnect").await;
    assert!(t.connected_address().is_some_and(|a| a.contains(":5672/")));
    let msg = Outgoing::from_envelope(&common::unlock(2, 0));
    t.publish(vec![msg.clone()])
        .await
        .expect("published after the reconnect");
    let d = common::take(&mut rx, 1, Duration::from_secs(20))
        .await
        .remove(0);
    assert_eq!(d.message_id.as_ref(), Some(&msg.message_id));
    d.ack().await.expect("acked");
}
