//! Crash safety of a node, checked like a Jepsen checker: 20,000 votes are published while
//! `merit serve` is SIGKILLed three times at random moments and restarted; at the end every
//! event must have been applied exactly once — 0 lost, 0 doubled, 0 unexpected.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Backend, NodeProcess, TestDb, Vhost};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{Envelope, ProposalCreated, VoteCast, VoteChoice};
use merit_storage::{
    entities::{achievement, inbox, outbox, user, vote},
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};
use rand::{Rng, SeedableRng};

const USERS: u32 = 500;
const PROPOSALS: u32 = 40;

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
    Counts {
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
async fn a_sigkilled_node_applies_every_event_exactly_once() {
    common::init_crypto();
    let seed: u64 = rand::thread_rng().gen();
    println!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    let vhost = Vhost::create();
    let topology = Topology {
        prefix: String::new(),
        shards: 4,
    };
    let publisher = RabbitTransport::connect(&vhost.url, topology)
        .await
        .expect("connect publisher");
    publisher.declare().await.expect("declare");

    let (proposals, votes) = workload();
    let expected_votes = votes.len() as u64;
    let log = common::artefacts().join(format!("crash-{}.log", vhost.name));
    let envs = [
        ("MERIT_DATABASE_URL", db.url.as_str()),
        ("MERIT_AMQP_URL", vhost.url.as_str()),
        ("MERIT_MAILBOX_SHARDS", "4"),
        ("MERIT_MAILBOX_PREFETCH", "200"),
        ("MERIT_NODE_ID", "crash-node"),
    ];
    let mut node = NodeProcess::spawn(&envs, &log);

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

    // Three SIGKILLs, each when progress crosses a random point between 5% and 90%.
    let mut thresholds: Vec<u64> = (0..3)
        .map(|_| rng.gen_range(expected_votes / 20..expected_votes * 9 / 10))
        .collect();
    thresholds.sort_unstable();
    let mut kills = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    for threshold in thresholds {
        loop {
            let applied = counts(&store).await.votes_rows;
            if applied >= threshold {
                node.kill();
                kills += 1;
                println!("SIGKILL #{kills} at {applied} of {expected_votes} votes applied");
                node = NodeProcess::spawn(&envs, &log);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no progress: {applied} of {expected_votes} applied (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _publisher = publishing.await.expect("publisher task");

    // Wait until everything is applied, then a little longer to catch late doubles.
    loop {
        let c = counts(&store).await;
        if c.votes_rows >= expected_votes && c.votes_counted_by_users >= expected_votes as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {} of {expected_votes} votes applied (log: {})",
            c.votes_rows,
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = node.stop();
    let c = counts(&store).await;

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
        c.proposals_counted_by_users,
        i64::from(PROPOSALS),
        "proposal creations counted once"
    );
    // The built-in rules: every creator unlocks "first-proposal"; every voter votes on all
    // 40 proposals (seqs 1..=40), so unlocks "voter-10" and "streak-5". Once each, however
    // often the node died.
    let expected_achievements = u64::from(PROPOSALS) + 2 * u64::from(USERS);
    assert_eq!(
        c.achievements, expected_achievements,
        "achievements unlocked once each"
    );
    // Each user actor applied every creation, recorded vote, its own unlocks, the
    // holdings changes of the NFTs those unlocks minted (the node runs the unlock saga on
    // its embedded dev chain) and the sagas' outcomes (minted / failed) once; each proposal actor every creation, vote and deadline
    // once: no more, no fewer.
    assert_eq!(
        c.user_inbox_rows,
        expected_votes
            + u64::from(PROPOSALS)
            + expected_achievements
            + c.holdings_changes
            + c.achievement_outcomes,
        "user inbox rows (unexpected effects)"
    );
    assert_eq!(
        c.proposal_inbox_rows,
        expected_votes + u64::from(PROPOSALS) + c.deadlines,
        "proposal inbox rows (unexpected effects)"
    );
    assert!(
        status.success(),
        "the node stopped cleanly on SIGTERM: {status}"
    );
    vhost.delete();
    db.cleanup().await;
}
