//! 3. A rule added at run time, and rolled back.

use std::{collections::BTreeSet, time::Duration};

use chrono::Utc;
use merit_actors::center::{CenterError, ConfigCenter};
use merit_config::dynamic::DEFAULT_DOCUMENT;
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_storage::Store;
use merit_supervisors::Node;
use serde_json::{json, Value};

use crate::{
    common::{self, eventually, run_in_system, TestDb, Vhost},
    events::{addr, created},
    harness::{rabbit, settles, SHARDS},
    reading::{read_achievements, read_users, unlocked, AchievementRow},
};

/// The built-in document plus `rule`.
fn document_with(rule: Value) -> Vec<u8> {
    let mut doc: Value = serde_json::from_str(DEFAULT_DOCUMENT).expect("built-in document");
    doc["rules"]
        .as_array_mut()
        .expect("rules is a list")
        .push(rule);
    serde_json::to_vec(&doc).expect("serialise")
}

fn created_rule(at_least: i64, tier: &str) -> Value {
    json!({
        "id": "created-2", "tier": tier, "title": "Created two proposals",
        "when": { "count": { "activity": "proposal_created", "at_least": at_least } }
    })
}

/// Starts a node on a pool of its own: a pool shared with the test would keep connections
/// opened on a node's runtime, which the test then hits after that node shut down ("a Tokio
/// context was found, but it is being shutdown").
async fn start_node(name: &str, db: &TestDb, vhost: &Vhost) -> Node {
    common::start_node(name, SHARDS, db.connect().await, rabbit(vhost).await).await
}

/// Publishes two (or `n`) proposal creations by `creator` and waits until its user row
/// counts `total` created proposals (its achievements are written in the same turn).
async fn create_proposals(
    producer: &RabbitTransport,
    store: &Store,
    creator: u32,
    ids: &[&str],
    total: i64,
) {
    let now = Utc::now();
    let batch = ids
        .iter()
        .map(|p| {
            Outgoing::from_envelope(&created(
                &format!("create:{p}"),
                p,
                creator,
                now - chrono::Duration::minutes(1),
                now + chrono::Duration::days(7),
                1,
                5_000,
            ))
        })
        .collect();
    producer.publish(batch).await.expect("publish");
    settles(
        60,
        &format!("u{creator}'s proposals are counted"),
        || async move {
            read_users(store)
                .await
                .get(&addr(creator))
                .map(|u| u.created)
        },
        &Some(total),
    )
    .await;
}

async fn achievements_of(store: &Store, user: u32) -> BTreeSet<AchievementRow> {
    read_achievements(store)
        .await
        .into_iter()
        .filter(|a| a.user == addr(user))
        .collect()
}

/// The achievements expected for `user`: first-proposal, and created-2 when `created_2`,
/// at config version `version`.
fn first_and_created_2(user: u32, created_2: bool, version: i64) -> BTreeSet<AchievementRow> {
    let mut rows: BTreeSet<_> = [unlocked(user, "first-proposal", "bronze", version)]
        .into_iter()
        .collect();
    if created_2 {
        rows.insert(unlocked(user, "created-2", "silver", version));
    }
    rows
}

/// Waits until both nodes run config version `version`.
async fn both_run(a: &Node, b: &Node, version: u64) {
    eventually(
        60,
        &format!("both nodes run version {version}"),
        move || async move {
            a.status().config_version == version && b.status().config_version == version
        },
    )
    .await;
}

/// Version 1 adds `created-2` (silver for a second proposal); both nodes apply it.
async fn check_version_1_reaches_both_nodes(
    center: &ConfigCenter,
    producer: &RabbitTransport,
    store: &Store,
    (a, b): (&Node, &Node),
) {
    let v1 = center
        .propose(
            &document_with(created_rule(2, "silver")),
            "test",
            "reward a second proposal",
        )
        .await
        .expect("a valid document is stored");
    assert_eq!(v1.version, 1);
    both_run(a, b, 1).await;
    create_proposals(producer, store, 1, &["a1", "a2"], 2).await;
    assert_eq!(
        achievements_of(store, 1).await,
        first_and_created_2(1, true, 1)
    );
}

/// Version 2 rolls back to the built-in document: `created-2` is gone, on both nodes.
async fn check_a_rollback_withdraws_the_rule(
    center: &ConfigCenter,
    producer: &RabbitTransport,
    store: &Store,
    (a, b): (&Node, &Node),
) {
    let v2 = center
        .rollback(0, "test", "withdraw created-2")
        .await
        .expect("rollback");
    assert_eq!((v2.version, v2.rollback_of), (2, Some(0)));
    let diff = center.diff(1, 2).await.expect("diff");
    let removed: Vec<String> = diff
        .rules
        .removed
        .iter()
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(removed, ["created-2"]);
    both_run(a, b, 2).await;
    create_proposals(producer, store, 2, &["c1", "c2"], 2).await;
    assert_eq!(
        achievements_of(store, 2).await,
        first_and_created_2(2, false, 2),
        "no created-2 after the rollback"
    );
    // u1's third proposal unlocks nothing either.
    create_proposals(producer, store, 1, &["a3"], 3).await;
    assert_eq!(
        achievements_of(store, 1).await,
        first_and_created_2(1, true, 1)
    );
}

/// Malformed documents are refused with the path of the fault, and change nothing.
async fn check_malformed_documents_change_nothing(center: &ConfigCenter, a: &Node) {
    for (rule, path) in [
        (created_rule(0, "silver"), "rules[4].when.count.at_least"),
        (created_rule(2, "platinum"), "rules[4].tier"),
    ] {
        match center.propose(&document_with(rule), "test", "typo").await {
            Err(CenterError::Invalid(e)) => assert_eq!(e.path, path, "{e}"),
            other => panic!("expected CenterError::Invalid at {path}, got {other:?}"),
        }
    }
    assert_eq!(center.latest_version().await.expect("latest"), 2);
    // Several watcher ticks later the node still runs version 2.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(a.status().config_version, 2);
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_rule_added_at_run_time_unlocks_on_every_node_and_a_rollback_stops_it() {
    run_in_system(async {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let producer = rabbit(&vhost).await;
        let a = start_node("rule-a", &db, &vhost).await;
        let b = start_node("rule-b", &db, &vhost).await;
        assert_eq!(a.status().config_version, 0, "the built-in config");
        assert_eq!(b.status().config_version, 0, "the built-in config");
        let center = ConfigCenter::new(store.clone());
        check_version_1_reaches_both_nodes(&center, &producer, &store, (&a, &b)).await;

        // Node b alone (a stops and its connection closes, so b takes every shard over)
        // applies the rule too.
        a.shutdown(Duration::from_secs(5)).await;
        create_proposals(&producer, &store, 3, &["b1", "b2"], 2).await;
        assert_eq!(
            achievements_of(&store, 3).await,
            first_and_created_2(3, true, 1)
        );
        let a = start_node("rule-a2", &db, &vhost).await;
        assert_eq!(
            a.status().config_version,
            1,
            "a starting node activates the stored version before its first message"
        );
        check_a_rollback_withdraws_the_rule(&center, &producer, &store, (&a, &b)).await;

        // Node a alone (b stops) follows the rollback too.
        b.shutdown(Duration::from_secs(5)).await;
        create_proposals(&producer, &store, 4, &["d1", "d2"], 2).await;
        assert_eq!(
            achievements_of(&store, 4).await,
            first_and_created_2(4, false, 2),
            "no created-2 on node a"
        );
        check_malformed_documents_change_nothing(&center, &a).await;

        a.shutdown(Duration::from_secs(5)).await;
        drop(producer);
        vhost.delete();
        db.cleanup().await;
    });
}
