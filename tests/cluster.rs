//! Nodes share the shard queues: each owns a balanced share of the shards (rendezvous
//! over the live nodes), hands them over when it stops or another joins, and loses them
//! to the others when it is killed; nothing is lost, doubled or reordered.

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, Transport};
use merit_messages::{Envelope, VoteCast, VoteChoice};

/// Starts `merit serve` as node `id` on `db` and `vhost` with 4 shards, logging to `log`.
fn spawn_node(db: &TestDb, vhost: &Vhost, id: &str, log: &std::path::Path) -> NodeProcess {
    NodeProcess::spawn(
        &[
            ("MERIT_DATABASE_URL", db.url.as_str()),
            ("MERIT_AMQP_URL", vhost.url.as_str()),
            ("MERIT_MAILBOX_SHARDS", "4"),
            ("MERIT_NODE_ID", id),
        ],
        log,
    )
}

/// Votes the cluster test publishes: 300 voters on each of 20 proposals.
const VOTES: u32 = 6_000;

/// Publishes the 20 proposals, then their [`VOTES`] votes in chunks of 1000.
async fn publish_cluster_load(producer: &merit_mailbox::RabbitTransport) {
    let votes: Vec<Envelope> = (0..VOTES)
        .map(|i| {
            Envelope::new(
                "cluster-test",
                VoteCast {
                    proposal: format!("p-{}", i / 300).parse().expect("id"),
                    voter: common::wallet(i % 300),
                    choice: VoteChoice::For,
                    reason: None,
                },
            )
        })
        .collect();
    common::publish_open_proposals(producer, VOTES / 300).await;
    for chunk in votes.chunks(1_000) {
        producer
            .publish(chunk.iter().map(Outgoing::from_envelope).collect())
            .await
            .expect("publish");
    }
}

/// Polls every `poll` until the users' actors counted `at_least` votes; fails at
/// `deadline` with `stuck` (and the log's path). Returns the count.
async fn wait_votes_counted(
    store: &merit_storage::Store,
    at_least: i64,
    (deadline, poll): (tokio::time::Instant, Duration),
    stuck: &str,
    log: &std::path::Path,
) -> i64 {
    loop {
        let n = common::votes_counted(store).await;
        if n >= at_least {
            return n;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stuck}: {n} of {VOTES} (log: {})",
            log.display()
        );
        tokio::time::sleep(poll).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn killing_one_of_two_nodes_moves_its_shards_to_the_other_with_nothing_lost() {
    common::init_crypto();
    let (db, store, vhost) = common::pg_and_vhost().await;
    let producer = common::declared_transport(&vhost.url, 4).await;
    let log = common::artefacts().join(format!("cluster-{}.log", vhost.name));
    let a = spawn_node(&db, &vhost, "node-a", &log);
    // A starts first and owns every shard; B joins and takes its share over from A.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = spawn_node(&db, &vhost, "node-b", &log);
    publish_cluster_load(&producer).await;
    // Kill A once it has applied part of the work.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    let n = wait_votes_counted(
        &store,
        i64::from(VOTES) / 5,
        (deadline, Duration::from_millis(50)),
        "no progress before the kill",
        &log,
    )
    .await;
    println!("SIGKILL node-a at {n} of {VOTES}");
    a.kill();
    wait_votes_counted(
        &store,
        i64::from(VOTES),
        (deadline, Duration::from_millis(200)),
        "node-b did not finish",
        &log,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        common::votes_counted(&store).await,
        i64::from(VOTES),
        "0 lost, 0 doubled"
    );
    assert!(b.stop().success(), "node-b stops cleanly");
    vhost.delete();
    db.cleanup().await;
}

const SHARDS: u16 = 4;

/// Waits until `/api/v1/nodes` (asked of `base`) lists exactly `nodes` and their owned
/// shards cover every shard once, each node holding its share of each kind within one.
/// Returns how long that took.
async fn balanced(base: &str, admin: &str, nodes: &[&str], secs: u64) -> Duration {
    let started = tokio::time::Instant::now();
    let client = reqwest::Client::new();
    let mut last = String::new();
    loop {
        let answer = client
            .get(format!("{base}/api/v1/nodes"))
            .bearer_auth(admin)
            .send()
            .await;
        if let Ok(answer) = answer {
            let body: serde_json::Value = answer.json().await.unwrap_or_default();
            last = body.to_string();
            if is_balanced(&body, nodes) {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "shards not balanced over {nodes:?} within {secs}s; last /nodes: {last}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_balanced(body: &serde_json::Value, nodes: &[&str]) -> bool {
    let Some(items) = body["items"].as_array() else {
        return false;
    };
    let ids: BTreeSet<&str> = items.iter().filter_map(|n| n["node_id"].as_str()).collect();
    if ids != nodes.iter().copied().collect() {
        return false;
    }
    let mut seen = BTreeSet::new();
    for node in items {
        let owned: Vec<&str> = node["owned"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        for shard in &owned {
            if !seen.insert(shard.to_string()) {
                return false; // two owners
            }
        }
        for kind in ["user", "proposal", "nft"] {
            let n = owned
                .iter()
                .filter(|s| s.starts_with(&format!("{kind}.")))
                .count();
            let share = usize::from(SHARDS) / nodes.len();
            if n < share || n > share + 1 {
                return false;
            }
        }
    }
    seen.len() == 3 * usize::from(SHARDS)
}

/// Three nodes split the shards; a fourth joins and takes its share; one is stopped with
/// SIGTERM and hands its shards over; one is SIGKILLed and the others take its shards
/// after its registration expires. Meanwhile 1,000 NFTs are minted and transferred 9
/// times each (per-key order matters): every change is applied once and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn shards_balance_over_live_nodes_and_move_without_loss_doubling_or_reordering() {
    const TOKENS: u32 = 1_000;
    const HOPS: u32 = 9;
    common::init_crypto();
    let (db, store, vhost) = common::pg_and_vhost().await;
    let producer = common::declared_transport(&vhost.url, SHARDS).await;
    let (admin, jwt) = common::secrets();
    let log = common::artefacts().join(format!("cluster-balance-{}.log", vhost.name));
    let shards = SHARDS.to_string();
    let spawn = |id: &str| {
        NodeProcess::spawn(
            &[
                ("MERIT_DATABASE_URL", db.url.as_str()),
                ("MERIT_AMQP_URL", vhost.url.as_str()),
                ("MERIT_MAILBOX_SHARDS", shards.as_str()),
                ("MERIT_NODE_ID", id),
                ("MERIT_ADMIN_TOKEN", admin.as_str()),
                ("MERIT_JWT_SECRET", jwt.as_str()),
            ],
            &log,
        )
    };
    let publish = |step: u32| {
        let producer = &producer;
        async move {
            for chunk in common::nft_step(step, TOKENS).chunks(500) {
                producer.publish(chunk.to_vec()).await.expect("publish");
            }
        }
    };

    let n1 = spawn("node-1");
    let base = n1.http_url(60);
    let n2 = spawn("node-2");
    let n3 = spawn("node-3");
    let took = balanced(&base, &admin, &["node-1", "node-2", "node-3"], 60).await;
    println!("3 nodes balanced {took:?} after the first started");

    publish(0).await;
    publish(1).await;
    publish(2).await;
    let n4 = spawn("node-4");
    publish(3).await;
    publish(4).await;
    let took = balanced(&base, &admin, &["node-1", "node-2", "node-3", "node-4"], 30).await;
    println!("a fourth node joined: balanced over 4 in {took:?}");

    publish(5).await;
    publish(6).await;
    let stopped = tokio::task::spawn_blocking(move || n2.stop())
        .await
        .expect("stop node-2");
    assert!(stopped.success(), "node-2 stops cleanly on SIGTERM");
    publish(7).await;
    let took = balanced(&base, &admin, &["node-1", "node-3", "node-4"], 30).await;
    println!("node-2 stopped (SIGTERM): balanced over 3 in {took:?}");

    publish(8).await;
    n3.kill();
    publish(9).await;
    // Taken over once node-3's registration expires (15 s TTL) and the others read it.
    let took = balanced(&base, &admin, &["node-1", "node-4"], 60).await;
    println!("node-3 killed (SIGKILL): balanced over 2 in {took:?}");

    common::nft_chains_applied(&store, TOKENS, HOPS, 180).await;
    // Redeliveries after the kill settle within a moment; then nothing more may appear.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let emitted = common::holdings_changes_emitted(&store).await;
    assert_eq!(
        emitted,
        u64::from(TOKENS) * (1 + 2 * u64::from(HOPS)),
        "each change applied exactly once and in order (a reordered transfer is ignored, \
         a doubled one would emit twice); log: {}",
        log.display()
    );
    assert!(n1.stop().success(), "node-1 stops cleanly");
    assert!(n4.stop().success(), "node-4 stops cleanly");
    vhost.delete();
    db.cleanup().await;
}
