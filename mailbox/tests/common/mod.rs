//! Shared harness for the RabbitMQ tests: each test gets its own vhost, deleted on drop, so
//! tests run in parallel against one broker without seeing each other's queues.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use merit_mailbox::{Delivery, RabbitTransport, Topology, Transport};
use merit_messages::{AchievementUnlocked, Address, Envelope, Event, ProposalCreated, ProposalId};
use tokio::sync::mpsc;

#[allow(unused_imports)] // each test binary uses its own part of the harness
pub use merit_testkit::broker::{rabbitmqctl, Vhost};

/// The wallet address of test user `n`.
pub fn user(n: u32) -> Address {
    let mut bytes = [0x11u8; 20];
    bytes[16..].copy_from_slice(&n.to_be_bytes());
    Address(bytes)
}

/// `achievement.unlocked` for user `n` (handled by the user kind only); `seq` travels as
/// `rule_version` so a test can check per-key order.
pub fn unlock(n: u32, seq: u64) -> Envelope {
    Envelope::new(
        "mailbox-test",
        AchievementUnlocked {
            user: user(n),
            achievement_id: uuid::Uuid::new_v4(),
            rule: "first-vote".parse().expect("valid rule id"),
            rule_version: seq,
            tier: "bronze".parse().expect("valid tier id"),
            token: (u128::from(n) * 1_000 + u128::from(seq)).into(),
        },
    )
}

/// `governance.proposal.created` by user `n` for proposal `p` (handled by proposal and
/// user: the event kind that reaches two actor kinds).
pub fn vote(n: u32, p: u32) -> Envelope {
    let proposal: ProposalId = format!("prop-{p}").parse().expect("valid proposal id");
    let now = chrono::Utc::now();
    Envelope::new(
        "mailbox-test",
        ProposalCreated {
            proposal,
            creator: user(n),
            title: "t".into(),
            description: String::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            quorum: 1,
            threshold_bps: 5_000,
        },
    )
}

/// `(user key, seq)` of a delivered `achievement.unlocked`.
pub fn unlock_of(d: &Delivery) -> (String, u64) {
    let env = Envelope::decode(&d.body).expect("a valid envelope");
    match env.event {
        Event::AchievementUnlocked(u) => (u.user.to_string(), u.rule_version),
        other => panic!("expected achievement.unlocked, got {other:?}"),
    }
}

/// Receives `n` deliveries, failing after `within` without one.
pub async fn take(rx: &mut mpsc::Receiver<Delivery>, n: usize, within: Duration) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let d = tokio::time::timeout(within, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} deliveries arrived", out.len()))
            .expect("the delivery stream ended");
        out.push(d);
    }
    out
}

/// Asserts that nothing arrives within `quiet`.
pub async fn assert_nothing(rx: &mut mpsc::Receiver<Delivery>, quiet: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(quiet, rx.recv()).await {
        panic!("unexpected delivery {d:?}");
    }
}

/// Takes dead letter `id` off the dead-letter queue as a recorder does (acks it once
/// stored); the others go back. False when it did not come.
pub async fn take_dead_letter<T: merit_mailbox::Transport + ?Sized>(t: &T, id: &str) -> bool {
    let mut rx = t
        .consume_dead_letters(100)
        .await
        .expect("consume dead letters");
    let mut found = false;
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        if d.dead_letter.id == id {
            d.ack().await.expect("ack");
            found = true;
        }
    }
    found
}

/// A transport connected to `vhost` with `shards` shards per kind (nothing declared).
pub async fn connect(vhost: &Vhost, shards: u16) -> RabbitTransport {
    RabbitTransport::connect(&vhost.url(), Topology::new(shards))
        .await
        .expect("connected to RabbitMQ")
}

/// A transport connected to `vhost` with its topology of `shards` shards per kind declared.
pub async fn declared(vhost: &Vhost, shards: u16) -> RabbitTransport {
    let t = connect(vhost, shards).await;
    t.declare().await.expect("declared");
    t
}

/// Every queue's depth (ready messages), by name.
pub async fn depths<T: merit_mailbox::Transport + ?Sized>(
    t: &T,
) -> std::collections::HashMap<String, u64> {
    t.queue_depths()
        .await
        .expect("depths")
        .into_iter()
        .collect()
}

/// The depths of the queues whose names start with `prefix`, added up.
pub fn sum(depths: &std::collections::HashMap<String, u64>, prefix: &str) -> u64 {
    depths
        .iter()
        .filter(|(n, _)| n.starts_with(prefix))
        .map(|(_, d)| d)
        .sum()
}
