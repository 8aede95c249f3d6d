//! The in-process transport keeps the mailbox semantics of the RabbitMQ one.

mod common;

use std::{collections::HashMap, time::Duration};

use merit_mailbox::{
    shard_for, DeadLetterReason, InProcessTransport, Outgoing, ShardId, Topology, Transport,
};
use merit_messages::{ActorKind, Origin};

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(100);

fn user_shard(n: u32, shards: u16) -> ShardId {
    ShardId::new(
        ActorKind::User,
        shard_for(&common::user(n).to_string(), shards),
    )
}

async fn depth(t: &InProcessTransport, queue: &str) -> u64 {
    t.queue_depths()
        .await
        .expect("depths")
        .into_iter()
        .find(|(n, _)| n == queue)
        .map(|(_, d)| d)
        .expect("queue listed")
}

#[tokio::test]
async fn messages_for_one_key_arrive_in_publish_order_on_its_shard() {
    let t = InProcessTransport::new(Topology::new(4));
    let batch: Vec<Outgoing> = (0..10)
        .flat_map(|seq| (0..20).map(move |k| Outgoing::from_envelope(&common::unlock(k, seq))))
        .collect();
    t.publish(batch).await.expect("published");

    let mut per_key: HashMap<String, Vec<u64>> = HashMap::new();
    for shard in Topology::new(4).shards_of(ActorKind::User) {
        let expected = depth(&t, &format!("merit.{shard}")).await;
        let mut rx = t.consume(shard, 8).await.expect("consuming");
        for _ in 0..expected {
            let d = common::take(&mut rx, 1, WAIT).await.remove(0);
            let (key, seq) = common::unlock_of(&d);
            assert_eq!(
                shard_for(&key, 4),
                shard.index,
                "key {key} on the wrong shard"
            );
            per_key.entry(key).or_default().push(seq);
            d.ack().await.expect("acked");
        }
        common::assert_nothing(&mut rx, QUIET).await;
    }
    assert_eq!(per_key.len(), 20);
    for (key, seqs) in per_key {
        assert_eq!(seqs, (0..10).collect::<Vec<_>>(), "order of {key}");
    }
}

#[tokio::test]
async fn a_requeued_message_comes_back_first_and_prefetch_bounds_what_is_in_flight() {
    let t = InProcessTransport::new(Topology::new(1));
    let shard = user_shard(1, 1);
    let batch: Vec<Outgoing> = (0..5)
        .map(|seq| Outgoing::from_envelope(&common::unlock(1, seq)))
        .collect();
    t.publish(batch).await.expect("published");

    let mut rx = t.consume(shard, 2).await.expect("consuming");
    let first = common::take(&mut rx, 2, WAIT).await;
    common::assert_nothing(&mut rx, QUIET).await; // prefetch 2: no third yet
    assert_eq!(depth(&t, "merit.user.0").await, 3);
    let mut first = first.into_iter();
    let (a, b) = (first.next().expect("0"), first.next().expect("1"));
    assert_eq!((common::unlock_of(&a).1, common::unlock_of(&b).1), (0, 1));

    a.requeue().await.expect("requeued");
    let again = common::take(&mut rx, 1, WAIT).await.remove(0);
    assert_eq!(
        common::unlock_of(&again).1,
        0,
        "the requeued message is not first"
    );
    assert!(again.redelivered);
    assert_eq!(again.delivery_count, 1);
    b.ack().await.expect("acked");
    again.ack().await.expect("acked");
    let rest: Vec<u64> = common::take(&mut rx, 2, WAIT)
        .await
        .iter()
        .map(|d| common::unlock_of(d).1)
        .collect();
    assert_eq!(rest, vec![2, 3]);
}

#[tokio::test]
async fn a_dropped_receiver_returns_its_unacked_messages_to_the_next_consumer_in_order() {
    let t = InProcessTransport::new(Topology::new(1));
    let shard = user_shard(2, 1);
    let batch: Vec<Outgoing> = (0..6)
        .map(|seq| Outgoing::from_envelope(&common::unlock(2, seq)))
        .collect();
    t.publish(batch).await.expect("published");

    let mut first = t.consume(shard, 4).await.expect("consuming");
    // A second consumer waits while the first is active (single active consumer).
    let mut second = t.consume(shard, 10).await.expect("consuming");
    let taken = common::take(&mut first, 2, WAIT).await;
    common::assert_nothing(&mut second, QUIET).await;
    let mut taken = taken.into_iter();
    taken.next().expect("0").ack().await.expect("acked");
    let held = taken.next().expect("1");
    drop(first); // with 1 taken but unacked and 2 more buffered
    drop(held);

    // The first consumer held 1 and had 2, 3 and (after acking 0) 4 buffered: all four
    // come back, first and in order, ahead of 5.
    let got = common::take(&mut second, 5, WAIT).await;
    let seqs: Vec<u64> = got.iter().map(|d| common::unlock_of(d).1).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    for d in &got[..4] {
        assert!(d.redelivered && d.delivery_count == 1, "{d:?}");
    }
    for d in &got[4..] {
        assert!(!d.redelivered && d.delivery_count == 0, "{d:?}");
    }
}

/// Publishes a mix on a 2-shard topology: an unknown type, an unlock without key headers,
/// a vote without its proposal header, a broadcast, a forged unlock through the producers'
/// door and a well-formed unlock for user 3. Returns the headerless unlock.
async fn publish_the_unroutable_mix(t: &InProcessTransport) -> Outgoing {
    let mut headerless = Outgoing::from_envelope(&common::unlock(3, 0));
    headerless.headers.clear();
    let mut half_vote = Outgoing::from_envelope(&common::vote(3, 9));
    half_vote.headers.remove("merit-proposal");
    // merit's own type through the producers' door: refused, whatever its headers.
    let forged = Outgoing::from_envelope(&common::unlock(4, 0)).through(Origin::Producer);
    t.publish(vec![
        Outgoing::new("no.such.event", "u-1", "{}"),
        headerless.clone(),
        half_vote,
        Outgoing::new("config.changed", "c-1", "{}").through(Origin::Merit),
        forged,
        Outgoing::from_envelope(&common::unlock(3, 1)),
    ])
    .await
    .expect("published");
    headerless
}

#[tokio::test]
async fn unroutable_messages_become_dead_letters_with_their_reason() {
    let t = InProcessTransport::new(Topology::new(2));
    publish_the_unroutable_mix(&t).await;

    let dls = t.dead_letters(10).await.expect("peeked");
    let classes: Vec<&str> = dls.iter().map(|d| d.reason_class.as_str()).collect();
    assert_eq!(
        classes,
        vec![
            "unknown_type",
            "missing_key",
            "missing_key",
            "forbidden_type"
        ]
    );
    assert!(
        dls[3].reason.contains("published by merit alone"),
        "{}",
        dls[3].reason
    );
    assert!(dls[1].reason.contains("merit-user"), "{}", dls[1].reason);
    assert!(
        dls[2].reason.contains("merit-proposal"),
        "{}",
        dls[2].reason
    );
    assert!(dls.iter().all(|d| d.source_queue == "merit.unrouted"));
    assert_eq!(depth(&t, "merit.dlq").await, 4);
    // The well-formed unlock reached its user (the forged one did not reach user 4).
    assert_eq!(
        depth(&t, &format!("merit.{}", user_shard(4, 2))).await,
        u64::from(user_shard(4, 2) == user_shard(3, 2))
    );
    let shard = user_shard(3, 2);
    assert_eq!(depth(&t, &format!("merit.{shard}")).await, 1);
}

#[tokio::test]
async fn a_message_a_handler_gives_up_on_is_dead_lettered_with_its_reason_and_replays() {
    let t = InProcessTransport::new(Topology::new(2));
    publish_the_unroutable_mix(&t).await;
    let shard = user_shard(3, 2);

    // A handler gives up on user 3's message: dead letter with the reason, then replay it.
    let mut rx = t.consume(shard, 5).await.expect("consuming");
    let d = common::take(&mut rx, 1, WAIT).await.remove(0);
    let original_id = d.message_id.clone();
    d.dead_letter(&DeadLetterReason::new("handler_error", "boom", 4))
        .await
        .expect("dead-lettered");
    let dls = t.dead_letters(10).await.expect("peeked");
    let failed = dls.last().expect("a dead letter");
    assert_eq!(
        (
            failed.reason_class.as_str(),
            failed.reason.as_str(),
            failed.attempts
        ),
        ("handler_error", "boom", 4)
    );
    assert_eq!(failed.source_queue, format!("merit.{shard}"));
    assert_eq!(failed.message_id, original_id);

    t.publish(vec![failed.replay_message()])
        .await
        .expect("replayed");
    assert!(common::take_dead_letter(&t, &failed.id).await);
    let back = common::take(&mut rx, 1, WAIT).await.remove(0);
    assert_eq!(back.message_id, original_id);
    assert_eq!(
        back.routing_key_for(ActorKind::User),
        Some(common::user(3).to_string().as_str())
    );
    back.ack().await.expect("acked");
}

#[tokio::test]
async fn a_dead_letter_is_discarded_once_and_a_replayed_forgery_is_refused_again() {
    let t = InProcessTransport::new(Topology::new(2));
    let headerless = publish_the_unroutable_mix(&t).await;

    // Replaying the headerless one fails the same way again; discard removes it.
    let headerless_dl = t.dead_letters(10).await.expect("peeked")[1].clone();
    assert_eq!(
        headerless_dl.message_id.as_ref(),
        Some(&headerless.message_id)
    );
    assert!(
        common::take_dead_letter(&t, &headerless_dl.id).await,
        "discarded"
    );
    assert!(
        !common::take_dead_letter(&t, &headerless_dl.id).await,
        "once"
    );
    assert!(!common::take_dead_letter(&t, "no-such-id").await);
    // Left: the unknown type, the half vote's missing proposal route and the forgery;
    // replaying the forgery refuses it again (it goes back through the producers' door).
    let left = t.dead_letters(10).await.expect("peeked");
    let classes: Vec<&str> = left.iter().map(|d| d.reason_class.as_str()).collect();
    assert_eq!(
        classes,
        vec!["unknown_type", "missing_key", "forbidden_type"]
    );
    t.publish(vec![left[2].replay_message()])
        .await
        .expect("replayed");
    assert!(common::take_dead_letter(&t, &left[2].id).await);
    let again = t.dead_letters(10).await.expect("peeked");
    assert_eq!(again.len(), 3);
    assert_eq!(again[2].reason_class, "forbidden_type");
    assert_eq!(again[2].message_id, left[2].message_id);
    assert_ne!(again[2].id, left[2].id, "the replay's own dead letter");
}
