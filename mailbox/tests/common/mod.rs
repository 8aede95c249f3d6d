//! Shared harness for the RabbitMQ tests: each test gets its own vhost, deleted on drop, so
//! tests run in parallel against one broker without seeing each other's queues.

#![allow(dead_code, unreachable_pub)]

use std::{process::Command, time::Duration};

use merit_mailbox::Delivery;
use merit_messages::{AchievementUnlocked, Address, Envelope, Event, ProposalCreated, ProposalId};
use tokio::sync::mpsc;

/// A throwaway RabbitMQ vhost, `merit-t-<uuid>`, with full permissions for `guest`.
pub struct Vhost {
    /// The vhost's name.
    pub name: String,
}

impl Vhost {
    /// Creates the vhost and grants `guest` everything on it; installs the rustls provider.
    pub fn create() -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let vhost = Self {
            name: format!("merit-t-{}", uuid::Uuid::new_v4().simple()),
        };
        vhost.add();
        vhost
    }

    /// (Re)creates the vhost, empty, with full permissions for `guest`.
    pub fn add(&self) {
        rabbitmqctl(&["add_vhost", &self.name]);
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Forcibly closes every client connection to this vhost (and only this vhost).
    pub fn close_all_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.name,
            "merit test: forced close",
        ]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.name])
            .output();
    }
}

/// Runs `rabbitmqctl args…`, panicking with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl is installed");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

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
