//! Every voter hears how the proposal ended: closing (here, a cancellation) fans a
//! `governance.proposal.result` out to each voter's notification log in batches, exactly
//! once per voter and gap-free, even when the node is SIGKILLed while the fan-out runs.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::{Envelope, ProposalCancelled, VoteChoice};
use merit_storage::{
    entities::notification,
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};

/// Voters of the proposal: 4,000, or `MERIT_FANOUT_VOTERS` for the large run (the README's
/// 100,000 figure).
fn voters() -> u32 {
    std::env::var("MERIT_FANOUT_VOTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
}

const RESULT: &str = "governance.proposal.result";

async fn results(store: &Store) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::Kind.eq(RESULT))
        .count(store.db())
        .await
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn every_voter_hears_the_outcome_once_across_a_sigkill_mid_fan_out() {
    common::init_crypto();
    let voters_n = voters();
    // Generous bounds for the large run: they only stop a hang.
    let bound = 120 + u64::from(voters_n) / 100;
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    let vhost = Vhost::create();
    let log = common::fresh_log("fanout.log");
    let envs = [
        ("MERIT_DATABASE_URL", db.url.as_str()),
        ("MERIT_AMQP_URL", vhost.url.as_str()),
        ("MERIT_MAILBOX_SHARDS", "2"),
        ("MERIT_NODE_ID", "fanout-node"),
    ];
    let node = NodeProcess::spawn(&envs, &log);
    common::wait_ready(&node.http_url(60), 60).await;
    let producer = common::producer(&vhost, 2).await;

    publish_the_proposal_and_its_votes(&producer, voters_n).await;
    let cast = Instant::now();
    common::eventually(bound, "every vote counted", || {
        let store = store.clone();
        async move { common::votes_counted(&store).await == i64::from(voters_n) }
    })
    .await;
    let counting = cast.elapsed();

    let started = Instant::now();
    let at_kill = cancel_and_kill_the_node_mid_fan_out(&producer, &store, node, voters_n).await;
    let node = NodeProcess::spawn(&envs, &log);
    common::eventually(bound, "every voter told", || {
        let store = store.clone();
        async move { results(&store).await >= u64::from(voters_n) }
    })
    .await;
    let took = started.elapsed();
    // Give any doubled delivery time to show up before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    check_each_voter_was_told_once_in_a_gap_free_log(&store, voters_n).await;
    eprintln!(
        "fan-out: {voters_n} votes counted in {:.1} s; {voters_n} voters told in {:.1} s, \
         node SIGKILLed after {at_kill} of them",
        counting.as_secs_f64(),
        took.as_secs_f64()
    );

    node.stop();
    drop(producer);
    vhost.delete();
    db.cleanup().await;
}

/// The proposal "fan", then a vote on it from each of `voters_n` voters.
async fn publish_the_proposal_and_its_votes(producer: &RabbitTransport, voters_n: u32) {
    let created = common::open_proposal("fan");
    producer
        .publish(vec![Outgoing::from_envelope(&created)])
        .await
        .expect("proposal published");
    let votes: Vec<Outgoing> = (0..voters_n)
        .map(|i| {
            Outgoing::from_envelope(&common::vote_cast(
                "test",
                "fan",
                common::wallet(i),
                VoteChoice::For,
            ))
        })
        .collect();
    for chunk in votes.chunks(500) {
        producer
            .publish(chunk.to_vec())
            .await
            .expect("votes published");
    }
}

/// The creator cancels: the proposal closes and its voters are told, in batches. The node
/// is SIGKILLed once the first results are in, while the rest are on their way; returns
/// how many were told by then.
async fn cancel_and_kill_the_node_mid_fan_out(
    producer: &RabbitTransport,
    store: &Store,
    node: NodeProcess,
    voters_n: u32,
) -> u64 {
    let cancel = Envelope::new(
        "test",
        ProposalCancelled {
            proposal: "fan".parse().expect("id"),
            by: common::wallet(999_999),
            reason: "superseded".into(),
        },
    );
    producer
        .publish(vec![Outgoing::from_envelope(&cancel)])
        .await
        .expect("cancel published");
    common::eventually(120, "the fan-out started", || {
        let store = store.clone();
        async move { results(&store).await > 0 }
    })
    .await;
    let at_kill = results(store).await;
    node.kill();
    assert!(
        at_kill < u64::from(voters_n),
        "the node was killed with the fan-out under way ({at_kill} of {voters_n} told)"
    );
    at_kill
}

/// Every voter told the outcome exactly once, and every user's log gap-free.
async fn check_each_voter_was_told_once_in_a_gap_free_log(store: &Store, voters_n: u32) {
    let rows = notification::Entity::find()
        .all(store.db())
        .await
        .expect("notifications");
    let mut told: BTreeMap<&str, u32> = BTreeMap::new();
    let mut logs: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for n in &rows {
        logs.entry(n.user.as_str()).or_default().push(n.seq);
        if n.kind == RESULT {
            assert_eq!(n.payload["proposal"], "fan");
            assert_eq!(n.payload["outcome"], "cancelled");
            assert_eq!(n.payload["tally"]["voters"], voters_n);
            *told.entry(n.user.as_str()).or_default() += 1;
        }
    }
    let voters: BTreeSet<String> = (0..voters_n)
        .map(|i| common::wallet(i).to_string())
        .collect();
    assert_eq!(told.len(), voters.len(), "every voter told");
    assert!(
        told.iter()
            .all(|(user, n)| *n == 1 && voters.contains(*user)),
        "each voter told exactly once"
    );
    for (user, mut seqs) in logs {
        seqs.sort_unstable();
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "{user}'s log is gap-free");
    }
}
