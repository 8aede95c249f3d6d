//! Dead letters on RabbitMQ: unroutable messages are moved to the DLQ with a reason, a
//! consumer can dead-letter a delivery, and dead letters can be peeked, replayed and
//! discarded.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{depths, sum};
use lapin::{
    options::{BasicGetOptions, BasicNackOptions},
    Connection, ConnectionProperties,
};
use merit_mailbox::{
    DeadLetter, DeadLetterReason, Delivery, Outgoing, RabbitTransport, ShardId, Transport,
};
use merit_messages::{ActorKind, Origin};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// Depths once `settled` holds (or after 5 s): a peek returns what it held by closing its
/// channel, and the broker requeues that asynchronously, so depths may lag for a moment.
async fn depths_when(
    t: &RabbitTransport,
    settled: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let mut d = depths(t).await;
    for _ in 0..50 {
        if settled(&d) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        d = depths(t).await;
    }
    d
}

/// Polls the DLQ until it holds `n` dead letters.
async fn dead_letters_eventually(t: &RabbitTransport, n: usize) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let dls = t.dead_letters(n + 10).await.expect("peeked");
        if dls.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(dls.len(), n, "dead letters: {dls:#?}");
            return dls;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn unknown_types_and_missing_key_headers_are_dead_lettered_never_dropped() {
    let vhost = common::Vhost::create();
    let t = Arc::new(common::declared(&vhost, 2).await);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mover = {
        let t = t.clone();
        tokio::spawn(async move {
            t.run_unrouted_mover(Box::pin(async {
                let _ = stopped.await;
            }))
            .await
        })
    };

    let batch = misrouted_batch();
    let ids_of = |prefix: &str| -> Vec<String> {
        batch
            .iter()
            .filter(|m| m.message_id.starts_with(prefix))
            .map(|m| m.message_id.clone())
            .collect()
    };
    assert_eq!(ids_of("unknown-").len(), 7);
    t.publish(batch.clone()).await.expect("confirmed");

    let dls = dead_letters_eventually(&t, 7 + 5 + 4 + 2).await;
    let by_class = |class: &str| dls.iter().filter(|d| d.reason_class == class).count();
    assert_eq!(by_class("unknown_type"), 7);
    assert_eq!(by_class("missing_key"), 5 + 4);
    assert_eq!(by_class("forbidden_type"), 2);
    for d in &dls {
        check_unrouted_dead_letter(d, &batch);
    }

    // Count in == count out: every routed copy is in a shard, every other in the DLQ.
    let d = depths_when(&t, |d| d["merit.unrouted"] == 0 && d["merit.dlq"] == 18).await;
    assert_eq!(d["merit.unrouted"], 0);
    assert_eq!(d["merit.dlq"], 18);
    // Proposal creations reach only the proposal kind; the forged unlocks reached no one.
    assert_eq!(sum(&d, "merit.user."), 0);
    assert_eq!(sum(&d, "merit.proposal."), 2);
    assert_eq!(sum(&d, "merit.nft."), 0);

    stop.send(()).expect("mover running");
    mover
        .await
        .expect("mover task")
        .expect("mover stopped cleanly");
}

/// 7 of an unknown type, 5 without key headers, 4 votes without their proposal header, 2
/// well-formed votes, 3 broadcasts nobody is bound to and 2 of merit's own types through
/// the producers' door.
fn misrouted_batch() -> Vec<Outgoing> {
    let mut batch = Vec::new();
    // 7 of an unknown type.
    for i in 0..7 {
        batch.push(
            Outgoing::new("governance.vote.deleted", format!("unknown-{i}"), "{}")
                .with_header("merit-user", "0xab"),
        );
    }
    // 5 of a user-handled type with no key header at all.
    for i in 0..5 {
        let mut m = Outgoing::from_envelope(&common::unlock(i, 0));
        m.headers.clear();
        batch.push(m);
    }
    // 4 votes (proposal + user) with only the user header: the user shard gets them and
    // the missing proposal route is dead-lettered.
    for i in 0..4 {
        let mut m = Outgoing::from_envelope(&common::vote(i, 1));
        m.headers.remove("merit-proposal");
        batch.push(m);
    }
    // 2 well-formed votes reach both kinds; 3 broadcasts nobody is bound to are dropped.
    for i in 0..2 {
        batch.push(Outgoing::from_envelope(&common::vote(10 + i, 2)));
    }
    for i in 0..3 {
        batch
            .push(Outgoing::new("config.changed", format!("cfg-{i}"), "{}").through(Origin::Merit));
    }
    // 2 of merit's own types through the producers' door, with every header they need.
    for i in 0..2 {
        batch.push(Outgoing::from_envelope(&common::unlock(20 + i, 0)).through(Origin::Producer));
    }
    batch
}

/// A dead letter the unrouted mover made of one of `batch`: its original message, and the
/// reason it could not be routed.
fn check_unrouted_dead_letter(d: &DeadLetter, batch: &[Outgoing]) {
    assert_eq!(d.source_queue, "merit.unrouted");
    assert_eq!(d.attempts, 0);
    assert!(d.dead_lettered_at.ends_with('Z'), "{}", d.dead_lettered_at);
    let original = batch
        .iter()
        .find(|m| Some(&m.message_id) == d.message_id.as_ref())
        .expect("a dead letter of a published message");
    assert_eq!(d.routing_key, original.routing_key);
    assert_eq!(d.body, original.body);
    assert_eq!(d.headers, original.headers);
    match d.reason_class.as_str() {
        "unknown_type" => assert!(d.reason.contains("governance.vote.deleted"), "{}", d.reason),
        "forbidden_type" => assert!(d.reason.contains("merit alone"), "{}", d.reason),
        _ if d.routing_key == "governance.proposal.created" => {
            assert!(d.reason.contains("merit-proposal"), "{}", d.reason);
            assert!(!d.reason.contains("merit-user"), "{}", d.reason);
        }
        _ => assert!(d.reason.contains("merit-user"), "{}", d.reason),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_dead_lettered_delivery_can_be_peeked_replayed_and_discarded() {
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 1).await;
    let shard = ShardId::new(ActorKind::User, 0);
    let original = Outgoing::from_envelope(&common::unlock(7, 0));
    t.publish(vec![original.clone()]).await.expect("confirmed");

    let mut rx = t.consume(shard, 10).await.expect("consuming");
    let d = common::take(&mut rx, 1, WAIT).await.remove(0);
    let reason = DeadLetterReason::new("handler_error", "rule engine failed: boom", 3);
    d.dead_letter(&reason).await.expect("dead-lettered");

    let dls = t.dead_letters(10).await.expect("peeked");
    assert_eq!(
        dls,
        t.dead_letters(10).await.expect("peeked again"),
        "peek removed"
    );
    assert_eq!(dls.len(), 1);
    let dl = &dls[0];
    check_handler_dead_letter(dl, &original);
    let d = depths_when(&t, |d| d["merit.dlq"] == 1).await;
    assert_eq!((d["merit.user.0"], d["merit.dlq"]), (0, 1));
    check_reason_headers_on_the_wire(&vhost).await;
    let again = replay_and_check(&t, &mut rx, dl, &original).await;
    discard_and_check(&t, &mut rx, again, dl).await;
}

/// The dead letter a handler made of `original` with the reason "rule engine failed".
fn check_handler_dead_letter(dl: &DeadLetter, original: &Outgoing) {
    assert_eq!(dl.reason_class, "handler_error");
    assert_eq!(dl.reason, "rule engine failed: boom");
    assert_eq!(dl.attempts, 3);
    assert_eq!(dl.routing_key, "achievement.unlocked");
    assert_eq!(dl.source_queue, "merit.user.0");
    assert_eq!(dl.message_id.as_ref(), Some(&original.message_id));
    assert_eq!(dl.correlation_id, original.correlation_id);
    assert_eq!(dl.headers, original.headers);
    assert_eq!(dl.body, original.body);
    assert_ne!(dl.id, original.message_id);
}

/// On the wire: the reason headers of the one dead letter in the DLQ, for any AMQP tool.
async fn check_reason_headers_on_the_wire(vhost: &common::Vhost) {
    let raw = Connection::connect(&vhost.url(), ConnectionProperties::default())
        .await
        .expect("raw connection");
    let ch = raw.create_channel().await.expect("raw channel");
    let got = ch
        .basic_get("merit.dlq".into(), BasicGetOptions { no_ack: false })
        .await
        .expect("get")
        .expect("a dead letter");
    let headers = got.delivery.properties.headers().clone().expect("headers");
    for name in [
        "x-merit-reason-class",
        "x-merit-reason",
        "x-merit-attempts",
        "x-merit-original-routing-key",
        "x-merit-source-queue",
        "x-merit-dead-lettered-at",
        "merit-user",
    ] {
        assert!(
            headers.contains_key(name),
            "{name} missing from {headers:?}"
        );
    }
    got.delivery
        .acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .expect("returned");
    raw.close(200, "done".into()).await.expect("closed");
}

/// Replay: back to its shard with its original id and headers; the recorder's take
/// removes it from the DLQ. Returns the replayed delivery.
async fn replay_and_check(
    t: &RabbitTransport,
    rx: &mut mpsc::Receiver<Delivery>,
    dl: &DeadLetter,
    original: &Outgoing,
) -> Delivery {
    t.publish(vec![dl.replay_message()])
        .await
        .expect("replayed");
    assert!(common::take_dead_letter(t, &dl.id).await);
    assert!(!common::take_dead_letter(t, &dl.id).await, "taken once");
    let again = common::take(rx, 1, WAIT).await.remove(0);
    assert_eq!(again.message_id.as_ref(), Some(&original.message_id));
    assert_eq!(again.body, original.body);
    assert_eq!(
        again.routing_key_for(ActorKind::User),
        original.headers.get("merit-user").map(String::as_str)
    );
    let merit_headers: Vec<(&String, &String)> = again
        .headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-merit-"))
        .collect();
    assert_eq!(
        merit_headers,
        vec![(&"x-merit-replay-of".to_string(), &dl.id)],
        "only the mark of the dead letter it replays"
    );
    assert!(t.dead_letters(10).await.expect("peeked").is_empty());
    again
}

/// Discard: the replay dead-lettered again is gone for good once taken.
async fn discard_and_check(
    t: &RabbitTransport,
    rx: &mut mpsc::Receiver<Delivery>,
    again: Delivery,
    dl: &DeadLetter,
) {
    again
        .dead_letter(&DeadLetterReason::new("key_mismatch", "test", 1))
        .await
        .expect("dead-lettered");
    let dls = t.dead_letters(10).await.expect("peeked");
    assert_eq!(dls.len(), 1);
    assert_ne!(dls[0].id, dl.id, "the replay's own dead letter");
    assert!(common::take_dead_letter(t, &dls[0].id).await, "discarded");
    assert!(!common::take_dead_letter(t, &dls[0].id).await, "once");
    assert!(t.dead_letters(10).await.expect("peeked").is_empty());
    common::assert_nothing(rx, Duration::from_millis(300)).await;
    let d = depths_when(t, |d| d["merit.dlq"] == 0).await;
    assert_eq!((d["merit.user.0"], d["merit.dlq"]), (0, 0));
}

/// A message that stops every node that takes it (here: a consumer whose connection dies
/// with the message unsettled, again and again) is dead-lettered by the broker once it
/// passes the shard queue's delivery limit, and listed with its reason. Without an
/// explicit dead-letter target, RabbitMQ 4.x would drop it at its default limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_message_redelivered_past_the_delivery_limit_lands_in_the_dlq_with_its_reason() {
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 1).await;
    t.publish(vec![Outgoing::from_envelope(&common::unlock(1, 7))])
        .await
        .expect("published");
    let deliveries = crash_nodes_until_it_leaves(&vhost, ShardId::new(ActorKind::User, 0)).await;
    assert!(
        deliveries > 20,
        "left the queue after {deliveries} deliveries, before the limit"
    );
    let listed = listed_eventually(&t).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let dl = &listed[0];
    assert_eq!(dl.reason_class, "delivery_limit", "{dl:?}");
    assert!(dl.reason.contains("merit.user.0"), "{dl:?}");
    assert_eq!(
        (dl.routing_key.as_str(), dl.source_queue.as_str()),
        ("achievement.unlocked", "merit.user.0")
    );
}

/// The broker copies a message's headers into the dead letter it makes, so a producer
/// could dress a poison message up as one of merit's own dead letters: `x-merit-origin:
/// merit` would then replay it through merit's door, and a forged reason would hide why it
/// stopped the nodes. A broker-made dead letter is read from the broker's own record
/// (`x-death`), never from headers the message brought.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_poison_message_cannot_dress_up_as_merits_own_dead_letter() {
    let vhost = common::Vhost::create();
    let t = common::declared(&vhost, 1).await;
    let mut forged = Outgoing::new("governance.vote.cast", "forged-poison-1", "{}")
        .with_header("merit-proposal", "p-1")
        .with_header("x-merit-origin", "merit")
        .with_header("x-merit-reason-class", "handler_error")
        .with_header("x-merit-reason", "forged: nothing to see")
        .with_header("x-merit-source-queue", "merit.user.9")
        .with_header("x-first-death-reason", "expired")
        .with_header("x-first-death-queue", "merit.nft.9");
    forged.origin = Origin::Producer;
    t.publish(vec![forged]).await.expect("published");
    crash_nodes_until_it_leaves(&vhost, ShardId::new(ActorKind::Proposal, 0)).await;
    let listed = listed_eventually(&t).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let dl = &listed[0];
    assert_eq!(dl.origin, Origin::Producer, "never merit's door: {dl:?}");
    assert_eq!(dl.reason_class, "delivery_limit", "{dl:?}");
    assert_eq!(dl.source_queue, "merit.proposal.0", "{dl:?}");
    assert!(!dl.reason.contains("forged"), "{dl:?}");
    assert!(
        dl.headers.keys().all(|k| !k.starts_with("x-")),
        "no forged bookkeeping is replayed: {dl:?}"
    );
}

/// Nodes that each connect, take the one message on `shard` and die before settling it,
/// until it leaves the queue; returns how often it was delivered (at most 60).
async fn crash_nodes_until_it_leaves(vhost: &common::Vhost, shard: ShardId) -> u32 {
    let mut deliveries = 0;
    loop {
        let node = common::connect(vhost, 1).await;
        let mut rx = node.consume(shard, 1).await.expect("consuming");
        match tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
            Ok(Some(d)) => {
                deliveries += 1;
                assert!(
                    deliveries <= 60,
                    "delivered {deliveries} times and never dead-lettered"
                );
                d.release();
            }
            Ok(None) => panic!("the delivery stream ended"),
            Err(_) => return deliveries, // nothing left: the message left the queue
        }
        drop(rx);
        drop(node);
        vhost.close_connections();
    }
}

/// The dead letters, once there are any (or after [`WAIT`]).
async fn listed_eventually(t: &RabbitTransport) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = t.dead_letters(10).await.expect("list");
        if !listed.is_empty() || tokio::time::Instant::now() > deadline {
            return listed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
