//! Crash safety of a node, checked like a Jepsen checker: 20,000 votes are published while
//! `merit serve` is SIGKILLed three times at random moments and restarted; at the end every
//! event must have been applied exactly once — 0 lost, 0 doubled, 0 unexpected. Two
//! shapes: votes spread over 40 proposals, and every vote on one hot proposal (where the
//! ProposalActor applies hundreds of queued votes per turn and the shard acks them with
//! multiple-acks, so the kills land inside batched turns).

mod common;

use std::time::Duration;

use chrono::Utc;
use common::NodeProcess;
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::{achievement, inbox, outbox, proposal, user, vote},
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};
use rand::{Rng, SeedableRng};

const USERS: u32 = 500;
const PROPOSALS: u32 = 40;

/// One proposal, and 20,000 distinct voters on it.
fn hot_workload() -> (Vec<Envelope>, Vec<Envelope>) {
    let now = Utc::now();
    let voters = USERS * PROPOSALS;
    let proposal = Envelope::new(
        "crash-test",
        ProposalCreated {
            proposal: "hot".parse().expect("id"),
            creator: common::wallet(voters + 1),
            title: "The hot one".into(),
            description: String::new(),
            starts_at: now,
            ends_at: now + chrono::Duration::days(7),
            quorum: 1_000,
            threshold_bps: 5_000,
        },
    );
    let votes = (0..voters)
        .map(|u| {
            Envelope::new(
                "crash-test",
                VoteCast {
                    proposal: "hot".parse().expect("id"),
                    voter: common::wallet(u),
                    choice: if u % 3 == 0 {
                        VoteChoice::Against
                    } else {
                        VoteChoice::For
                    },
                    reason: None,
                },
            )
        })
        .collect();
    (vec![proposal], votes)
}

fn workload() -> (Vec<Envelope>, Vec<Envelope>) {
    let now = Utc::now();
    let proposals = (0..PROPOSALS)
        .map(|p| {
            Envelope::new(
                "crash-test",
                ProposalCreated {
                    proposal: format!("prop-{p}").parse().expect("id"),
                    // Creators do not vote: a vote on one's own proposal earns nothing.
                    creator: common::wallet(USERS + p),
                    title: format!("Proposal {p}"),
                    description: String::new(),
                    starts_at: now,
                    ends_at: now + chrono::Duration::days(7),
                    quorum: 1_000,
                    threshold_bps: 5_000,
                },
            )
        })
        .collect();
    let mut votes = Vec::new();
    for u in 0..USERS {
        for p in 0..PROPOSALS {
            let choice = if (u + p) % 3 == 0 {
                VoteChoice::Against
            } else {
                VoteChoice::For
            };
            votes.push(Envelope::new(
                "crash-test",
                VoteCast {
                    proposal: format!("prop-{p}").parse().expect("id"),
                    voter: common::wallet(u),
                    choice,
                    reason: None,
                },
            ));
        }
    }
    (proposals, votes)
}

struct Counts {
    votes_rows: u64,
    votes_counted_by_users: i64,
    proposals_counted_by_users: i64,
    user_inbox_rows: u64,
    proposal_inbox_rows: u64,
    deadlines: u64,
    achievements: u64,
    holdings_changes: u64,
    achievement_outcomes: u64,
    tallied_voters: u64,
}

impl Counts {
    /// What each user actor must have applied once: every accepted creation, recorded
    /// vote, its own unlocks, the holdings changes of the NFTs those unlocks minted (the
    /// node runs the unlock saga on its embedded dev chain) and the sagas' outcomes.
    fn user_events_expected(&self, proposals: u64, votes: u64) -> u64 {
        votes + proposals + self.achievements + self.holdings_changes + self.achievement_outcomes
    }
}

async fn inbox_rows(store: &Store, consumer: &str) -> u64 {
    inbox::Entity::find()
        .filter(inbox::Column::Consumer.eq(consumer))
        .count(store.db())
        .await
        .expect("inbox")
}

async fn counts(store: &Store) -> Counts {
    let db = store.db();
    let users = user::Entity::find().all(db).await.expect("users");
    let tallied_voters = proposal::Entity::find()
        .all(db)
        .await
        .expect("proposals")
        .iter()
        .map(|p| p.tally["voters"].as_u64().unwrap_or(0))
        .sum();
    Counts {
        tallied_voters,
        votes_rows: vote::Entity::find().count(db).await.expect("votes"),
        votes_counted_by_users: users.iter().map(|u| u.votes_cast).sum(),
        proposals_counted_by_users: users.iter().map(|u| u.proposals_created).sum(),
        user_inbox_rows: inbox_rows(store, "user").await,
        // merit's own events under `proposal`, the producers' under `proposal@producer`.
        proposal_inbox_rows: inbox_rows(store, "proposal").await
            + inbox_rows(store, "proposal@producer").await,
        deadlines: inbox_rows(store, merit_supervisors::DEADLINE_CONSUMER).await,
        achievements: achievement::Entity::find()
            .count(db)
            .await
            .expect("achievements"),
        holdings_changes: outbox::Entity::find()
            .filter(outbox::Column::RoutingKey.eq("user.holdings.changed"))
            .count(db)
            .await
            .expect("outbox"),
        achievement_outcomes: outbox::Entity::find()
            .filter(outbox::Column::RoutingKey.is_in(["achievement.minted", "achievement.failed"]))
            .count(db)
            .await
            .expect("outbox"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_sigkilled_node_applies_every_event_exactly_once() {
    // The built-in rules: every creator unlocks "first-proposal"; every voter votes on all
    // 40 proposals (seqs 1..=40), so unlocks "voter-10" and "streak-5". Once each, however
    // often the node died.
    let expected_achievements = u64::from(PROPOSALS) + 2 * u64::from(USERS);
    sigkilled_three_times(workload(), Some(expected_achievements)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs running services (README: Test tiers)"]
async fn a_sigkilled_node_counts_every_vote_on_one_hot_proposal_exactly_once() {
    sigkilled_three_times(hot_workload(), None).await;
}

/// Publishes `(proposals, votes)` while a node is SIGKILLed three times, then checks every
/// event was applied exactly once (and, when given, the number of achievements).
async fn sigkilled_three_times(
    (proposals, votes): (Vec<Envelope>, Vec<Envelope>),
    expected_achievements: Option<u64>,
) {
    common::init_crypto();
    let seed: u64 = rand::thread_rng().gen();
    println!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (db, store, vhost) = common::pg_and_vhost().await;
    let topology = Topology {
        prefix: String::new(),
        shards: 4,
    };
    let publisher = RabbitTransport::connect(&vhost.url, topology)
        .await
        .expect("connect publisher");
    publisher.declare().await.expect("declare");

    let proposal_count = proposals.len() as u64;
    let expected_votes = votes.len() as u64;
    let log = common::artefacts().join(format!("crash-{}.log", vhost.name));
    let envs = [
        ("MERIT_DATABASE_URL", db.url.as_str()),
        ("MERIT_AMQP_URL", vhost.url.as_str()),
        ("MERIT_MAILBOX_SHARDS", "4"),
        ("MERIT_MAILBOX_PREFETCH", "200"),
        ("MERIT_NODE_ID", "crash-node"),
    ];
    let node = NodeProcess::spawn(&envs, &log);

    publisher
        .publish(proposals.iter().map(Outgoing::from_envelope).collect())
        .await
        .expect("publish proposals");
    let publishing = tokio::spawn(async move {
        for chunk in votes.chunks(1_000) {
            publisher
                .publish(chunk.iter().map(Outgoing::from_envelope).collect())
                .await
                .expect("publish votes");
        }
        publisher
    });

    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let crashing = Crashing {
        store: &store,
        envs: &envs,
        log: &log,
        expected_votes,
        deadline,
    };
    let (node, kills) = crashing.kill_three_times(node, &mut rng).await;
    let _publisher = publishing.await.expect("publisher task");
    crashing.wait_all_applied().await;
    crashing.wait_tail_at_rest(proposal_count).await;
    let status = node.stop();
    let c = counts(&store).await;
    assert_applied_exactly_once(
        &c,
        kills,
        expected_votes,
        proposal_count,
        expected_achievements,
    );
    assert!(
        status.success(),
        "the node stopped cleanly on SIGTERM: {status}"
    );
    vhost.delete();
    db.cleanup().await;
}

/// A node under the crash test: its store, how it is started, and what it must apply.
struct Crashing<'a> {
    store: &'a Store,
    envs: &'a [(&'a str, &'a str)],
    log: &'a std::path::Path,
    expected_votes: u64,
    deadline: tokio::time::Instant,
}

impl Crashing<'_> {
    /// Three SIGKILLs, each when progress crosses a random point between 5% and 90%, each
    /// followed by a restart: the node running last, and how many kills there were.
    async fn kill_three_times(
        &self,
        mut node: NodeProcess,
        rng: &mut rand::rngs::StdRng,
    ) -> (NodeProcess, u32) {
        let expected_votes = self.expected_votes;
        let mut thresholds: Vec<u64> = (0..3)
            .map(|_| rng.gen_range(expected_votes / 20..expected_votes * 9 / 10))
            .collect();
        thresholds.sort_unstable();
        let mut kills = 0;
        for threshold in thresholds {
            loop {
                let applied = counts(self.store).await.votes_rows;
                if applied >= threshold {
                    node.kill();
                    kills += 1;
                    println!("SIGKILL #{kills} at {applied} of {expected_votes} votes applied");
                    node = NodeProcess::spawn(self.envs, self.log);
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < self.deadline,
                    "no progress: {applied} of {expected_votes} applied (log: {})",
                    self.log.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        (node, kills)
    }

    /// Waits until every vote is applied, then a little longer to catch late doubles.
    async fn wait_all_applied(&self) {
        let expected_votes = self.expected_votes;
        loop {
            let c = counts(self.store).await;
            if c.votes_rows >= expected_votes && c.votes_counted_by_users >= expected_votes as i64 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < self.deadline,
                "timed out: {} of {expected_votes} votes applied (log: {})",
                c.votes_rows,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Then until the tail is at rest: every event in the outbox applied by its actors on
    /// two reads a second apart (the check compares inboxes with the outbox, so it means
    /// something only at rest; unlock sagas may still be minting, and their events flow the
    /// same way).
    async fn wait_tail_at_rest(&self, proposal_count: u64) {
        let expected_votes = self.expected_votes;
        let settle_deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        let mut at_rest = 0;
        while at_rest < 2 {
            let c = counts(self.store).await;
            if c.user_inbox_rows == c.user_events_expected(proposal_count, expected_votes) {
                at_rest += 1;
            } else {
                at_rest = 0;
            }
            assert!(
                tokio::time::Instant::now() < settle_deadline,
                "the tail did not come to rest: user inbox {} of {} (log: {})",
                c.user_inbox_rows,
                c.user_events_expected(proposal_count, expected_votes),
                self.log.display()
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Nothing lost, nothing doubled: every vote stored, counted and tallied once, every
/// creation counted once, (when given) every achievement unlocked once, and each actor
/// applied each of its events once.
fn assert_applied_exactly_once(
    c: &Counts,
    kills: u32,
    expected_votes: u64,
    proposal_count: u64,
    expected_achievements: Option<u64>,
) {
    let expected_counted = expected_votes as i64;
    let lost = expected_counted - c.votes_counted_by_users.min(expected_counted);
    let doubled = (c.votes_counted_by_users - expected_counted).max(0);
    println!(
        "kills={kills} votes: expected={expected_votes} rows={} counted_by_users={} lost={lost} doubled={doubled} achievements={}",
        c.votes_rows, c.votes_counted_by_users, c.achievements
    );
    assert_eq!(kills, 3, "the node was killed three times while consuming");
    assert_eq!(c.votes_rows, expected_votes, "votes stored (lost if fewer)");
    assert_eq!(
        (lost, doubled),
        (0, 0),
        "users' vote counters: lost and doubled"
    );
    assert_eq!(
        c.proposals_counted_by_users as u64, proposal_count,
        "proposal creations counted once"
    );
    if let Some(expected) = expected_achievements {
        assert_eq!(c.achievements, expected, "achievements unlocked once each");
    }
    assert_eq!(
        c.tallied_voters, expected_votes,
        "the proposals' tallies count every vote once"
    );
    // Each user actor applied each of its events once (see `user_events_expected`); each
    // proposal actor every creation, vote and deadline once: no more, no fewer.
    // At rest they were equal (nothing lost); after the stop a saga's last events may be in
    // the outbox unapplied, never applied twice.
    assert!(
        c.user_inbox_rows <= c.user_events_expected(proposal_count, expected_votes),
        "user inbox rows {} > {} (unexpected effects)",
        c.user_inbox_rows,
        c.user_events_expected(proposal_count, expected_votes)
    );
    assert_eq!(
        c.proposal_inbox_rows,
        expected_votes + proposal_count + c.deadlines,
        "proposal inbox rows (unexpected effects)"
    );
}
