//! A voting stage: proposals created, votes published (paced or back to back) through the
//! load generator's connection, and their commits awaited in the UserActors' inbox.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use anyhow::Result;
use chrono::{DateTime, Utc};
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::{Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::inbox,
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use merit_supervisors::Node;

use super::{node::UnderTest, voter, Shape, PROPOSALS};

/// A voting stage's outcome.
pub(super) struct Run {
    /// From the first publish to the last commit.
    pub(super) secs: f64,
    /// Per vote, publish → the UserActor's commit of its `vote.recorded`, ms, sorted.
    pub(super) latencies: Vec<f64>,
    /// What was published.
    pub(super) sent: Sent,
}

/// The votes a stage published.
pub(super) struct Sent {
    /// The publish time of each vote by the id of its `vote.recorded`.
    pub(super) published: HashMap<String, DateTime<Utc>>,
    /// The ids of the votes sent.
    pub(super) vote_ids: Vec<String>,
    /// The ids of their `vote.recorded`s.
    pub(super) recorded_ids: Vec<String>,
}

/// Publishes `n` votes of `shape` (over 50 proposals, created first) through the load
/// generator's own connection, optionally paced at `rate` per second, and waits until
/// merit applied them all. Measures from the first publish to the last commit, and per
/// vote the latency from its publish to the commit of its `governance.vote.recorded` by
/// the voter's UserActor — the whole path through both actors and the relay.
pub(super) async fn run_votes(
    t: &UnderTest,
    tag: &str,
    n: u32,
    rate: Option<u32>,
    shape: Shape,
) -> Result<Run> {
    let now = Utc::now();
    let applied_before = applied(&t.node);
    let created = proposals(tag, now);
    let started_at = Utc::now();
    t.load.publish(created).await?;
    let sent = publish_votes(&t.load, tag, n, rate, shape).await?;
    // Each vote is a proposal turn (the vote) and a user turn (its vote.recorded); each
    // creation too (proposal and creator). Unlocked achievements add user turns on top,
    // so the count is reached a little before the last vote is in: it only says when to
    // start reading the inbox. The stage's time limit bounds both waits.
    let target = applied_before + 2 * u64::from(n + PROPOSALS);
    while applied(&t.node) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (latencies, last) = committed(&t.store, &sent, started_at).await?;
    // To the last commit's turn, not to when it was seen: the inbox reads take no part.
    let secs = (last - started_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    Ok(Run {
        secs,
        latencies,
        sent,
    })
}

/// Events the node's actors applied (or found duplicate) so far.
fn applied(node: &Node) -> u64 {
    node.status()
        .registries
        .iter()
        .map(|r| r.applied + r.duplicates)
        .sum()
}

/// The creation of stage `tag`'s proposals, open from `now` for a day.
fn proposals(tag: &str, now: DateTime<Utc>) -> Vec<Outgoing> {
    (0..PROPOSALS)
        .map(|p| {
            Outgoing::from_envelope(&Envelope::new(
                "bench",
                ProposalCreated {
                    proposal: format!("{tag}-{p}").parse().expect("valid id"),
                    creator: voter(p),
                    title: "bench".into(),
                    description: String::new(),
                    starts_at: now,
                    ends_at: now + chrono::Duration::days(1),
                    quorum: 1,
                    threshold_bps: 5_000,
                },
            ))
        })
        .collect()
}

/// Publishes `n` votes of `shape` on stage `tag`'s proposals through `load`, in batches:
/// one every 10 ms at `rate` per second, else back to back.
async fn publish_votes(
    load: &RabbitTransport,
    tag: &str,
    n: u32,
    rate: Option<u32>,
    shape: Shape,
) -> Result<Sent> {
    let mut sent = Sent {
        published: HashMap::with_capacity(n as usize),
        vote_ids: Vec::with_capacity(n as usize),
        recorded_ids: Vec::with_capacity(n as usize),
    };
    let batch = match rate {
        Some(r) => (r / 100).max(1), // one batch every 10 ms
        None => 500,
    };
    let mut i = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while i < n {
        if rate.is_some() {
            tick.tick().await;
        }
        let mut out = Vec::with_capacity(batch as usize);
        for _ in 0..batch.min(n - i) {
            let (v, p) = shape.vote(i, n);
            let env = Envelope::new(
                "bench",
                VoteCast {
                    proposal: format!("{tag}-{p}").parse().expect("valid id"),
                    voter: voter(v),
                    choice: VoteChoice::For,
                    reason: None,
                },
            );
            // The voter's UserActor commits the ProposalActor's `governance.vote.recorded`,
            // whose id derives from the vote's: the end of the path.
            let recorded = merit_messages::EventId::derived(env.id, "recorded").to_string();
            sent.published.insert(recorded.clone(), env.occurred_at);
            sent.recorded_ids.push(recorded);
            sent.vote_ids.push(env.id.to_string());
            out.push(Outgoing::from_envelope(&env));
            i += 1;
        }
        load.publish(out).await?;
    }
    Ok(sent)
}

/// Waits until the UserActors' inbox holds every vote's `vote.recorded` — then a run's
/// tail does not spill into the next run and no late vote is left out of the figures.
/// Returns each vote's publish → commit latency, ms, sorted, and the last commit's time
/// (`started_at` if none came later).
async fn committed(
    store: &Store,
    sent: &Sent,
    started_at: DateTime<Utc>,
) -> Result<(Vec<f64>, DateTime<Utc>)> {
    let user_inbox = merit_actors::inbox_consumer(
        merit_messages::ActorKind::User,
        merit_messages::Origin::Merit,
    );
    let mut pending: Vec<String> = sent.recorded_ids.clone();
    let mut latencies = Vec::with_capacity(sent.published.len());
    let mut last = started_at;
    loop {
        let mut missing = Vec::new();
        for chunk in pending.chunks(1_000) {
            let rows = inbox::Entity::find()
                .filter(inbox::Column::Consumer.eq(user_inbox.as_str()))
                .filter(inbox::Column::EventId.is_in(chunk.iter().cloned()))
                .all(store.db())
                .await?;
            let found: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
            missing.extend(
                chunk
                    .iter()
                    .filter(|id| !found.contains(id.as_str()))
                    .cloned(),
            );
            for row in &rows {
                if let Some(at) = sent.published.get(&row.event_id) {
                    latencies.push(
                        (row.processed_at - *at).num_microseconds().unwrap_or(0) as f64 / 1000.0,
                    );
                    last = last.max(row.processed_at);
                }
            }
        }
        pending = missing;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok((latencies, last))
}
