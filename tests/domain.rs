//! The domain end to end, on real RabbitMQ and PostgreSQL through an in-process node: a
//! scripted community (proposals with deadlines, votes, NFT boosts, achievements) ends in
//! the state computed by hand, and in the very same state when every event is delivered
//! twice; an NFT boosts at most one vote per proposal whoever holds it; a rule added at run
//! time reaches every node and a rollback withdraws it.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Debug,
    future::Future,
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use common::{eventually, node_options, run_in_system, services, wallet, TestDb, Vhost};
use merit_actors::{
    achievement_token,
    center::{CenterError, ConfigCenter},
};
use merit_config::{dynamic::DEFAULT_DOCUMENT, rules::achievement_id};
use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::{
    ActorKind, ChainRef, Envelope, Event, EventId, NftBurned, NftMinted, NftTransferred,
    ProposalCancelled, ProposalCreated, ProposalExecuted, Tally, VoteCast, VoteChoice,
};
use merit_storage::{
    entities::{achievement, actor, benefit, nft, notification, outbox, proposal, user, vote},
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};
use merit_supervisors::Node;
use serde_json::{json, Value};

const SHARDS: u16 = 2;

// ---------------------------------------------------------------------------------------
// Harness: one node on its own database and vhost.
// ---------------------------------------------------------------------------------------

async fn rabbit(vhost: &Vhost) -> Arc<RabbitTransport> {
    let t = RabbitTransport::connect(
        &vhost.url,
        Topology {
            prefix: String::new(),
            shards: SHARDS,
        },
    )
    .await
    .expect("connect to RabbitMQ");
    t.declare().await.expect("declare the topology");
    Arc::new(t)
}

/// A node on a fresh PostgreSQL database and a fresh vhost, and a producer connection.
struct Community {
    db: TestDb,
    store: Store,
    vhost: Vhost,
    producer: Arc<RabbitTransport>,
    node: Node,
}

impl Community {
    async fn start(name: &str) -> Self {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let producer = rabbit(&vhost).await;
        let node = Node::start(
            node_options(name, SHARDS),
            store.clone(),
            services(name),
            rabbit(&vhost).await,
        )
        .await
        .expect("node starts");
        Self {
            db,
            store,
            vhost,
            producer,
            node,
        }
    }

    /// Publishes `envs` in order, `copies` times over (the whole list, then the whole list
    /// again): each copy has the same event id.
    async fn publish(&self, envs: &[Envelope], copies: usize) {
        let batch: Vec<Outgoing> = (0..copies)
            .flat_map(|_| envs.iter().map(Outgoing::from_envelope))
            .collect();
        self.producer.publish(batch).await.expect("publish");
    }

    /// Nothing left to do: no ready message in any queue, no unpublished outbox row and no
    /// turn in flight — three times in a row, 200 ms apart.
    async fn wait_quiescent(&self) {
        let mut calm = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while calm < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node did not become quiescent"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let ready: u64 = self
                .producer
                .queue_depths()
                .await
                .expect("queue depths")
                .iter()
                .map(|(_, n)| n)
                .sum();
            let unsent = outbox::Entity::find()
                .filter(outbox::Column::PublishedAt.is_null())
                .count(self.store.db())
                .await
                .expect("count outbox");
            let inflight: usize = self
                .node
                .status()
                .registries
                .iter()
                .map(|r| r.inflight)
                .sum();
            calm = if ready == 0 && unsent == 0 && inflight == 0 {
                calm + 1
            } else {
                0
            };
        }
    }

    async fn stop(self) {
        self.node.shutdown(Duration::from_secs(5)).await;
        drop(self.producer);
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

/// Polls `read` every 100 ms until it returns `expected`; after `secs` it fails with the
/// last value read next to the expected one.
async fn settles<T, F, Fut>(secs: u64, what: &str, mut read: F, expected: &T)
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = read().await;
        if &got == expected {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            assert_eq!(&got, expected, "timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------------------

fn addr(i: u32) -> String {
    wallet(i).to_string()
}

/// The id of the script's event `label`: the same in every run, and for every copy.
fn id(label: &str) -> EventId {
    EventId::named(&format!("domain-test:{label}"))
}

fn ev(label: &str, at: DateTime<Utc>, event: impl Into<Event>) -> Envelope {
    Envelope::with_id(id(label), "domain-test", at, event)
}

fn created(
    label: &str,
    proposal: &str,
    creator: u32,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    quorum: u64,
    threshold_bps: u16,
) -> Envelope {
    ev(
        label,
        Utc::now(),
        ProposalCreated {
            proposal: proposal.parse().expect("proposal id"),
            creator: wallet(creator),
            title: format!("Proposal {proposal}"),
            description: String::new(),
            starts_at,
            ends_at,
            quorum,
            threshold_bps,
        },
    )
}

/// `voter` votes `choice` on `proposal`; the event is labelled `vote:{proposal}:u{voter}`
/// plus `suffix`.
fn vote_at(
    proposal: &str,
    voter: u32,
    choice: VoteChoice,
    suffix: &str,
    at: DateTime<Utc>,
) -> Envelope {
    ev(
        &format!("vote:{proposal}:u{voter}{suffix}"),
        at,
        VoteCast {
            proposal: proposal.parse().expect("proposal id"),
            voter: wallet(voter),
            choice,
            reason: None,
        },
    )
}

fn vote(proposal: &str, voter: u32, choice: VoteChoice) -> Envelope {
    vote_at(proposal, voter, choice, "", Utc::now())
}

/// The chain position of a made-up event: block `block`, log `log_index`.
fn chain(block: u64, log_index: u64) -> ChainRef {
    ChainRef {
        log_index,
        ..common::chain_ref(block)
    }
}

fn mint(token: u32, to: u32, tier: Option<&str>, block: u64, log: u64) -> Envelope {
    ev(
        &format!("mint:{token}"),
        Utc::now(),
        NftMinted {
            token: token.to_string().parse().expect("token"),
            to: wallet(to),
            achievement_id: None,
            tier: tier.map(|t| t.parse().expect("tier")),
            chain: chain(block, log),
        },
    )
}

fn transfer(token: u32, from: u32, to: u32, block: u64, log: u64) -> Envelope {
    ev(
        &format!("transfer:{token}:{block}:{log}"),
        Utc::now(),
        NftTransferred {
            token: token.to_string().parse().expect("token"),
            from: wallet(from),
            to: wallet(to),
            chain: chain(block, log),
        },
    )
}

fn burn(token: u32, from: u32, block: u64, log: u64) -> Envelope {
    ev(
        &format!("burn:{token}"),
        Utc::now(),
        NftBurned {
            token: token.to_string().parse().expect("token"),
            from: wallet(from),
            chain: chain(block, log),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Reading the store.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AchievementRow {
    user: String,
    rule: String,
    tier: String,
    rule_version: i64,
    id: String,
    token: Option<String>,
    state: String,
}

/// The achievement the built-in rule `rule` unlocks first for wallet `user`.
fn unlocked(user: u32, rule: &str, tier: &str, rule_version: i64) -> AchievementRow {
    let id = achievement_id(&wallet(user), &rule.parse().expect("rule id"), 1);
    AchievementRow {
        user: addr(user),
        rule: rule.to_string(),
        tier: tier.to_string(),
        rule_version,
        id: id.to_string(),
        token: Some(achievement_token(id).to_string()),
        state: "unlocked".to_string(),
    }
}

/// A `votes` row: choice, weight, boosts as (token, tier, bonus), the counted event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VoteRow {
    choice: String,
    weight: i64,
    boosts: Vec<(String, String, u64)>,
    event_id: String,
}

/// A `users` row: proposals created, votes counted, proposals passed, NFTs held, longest
/// streak.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserRow {
    created: i64,
    votes: i64,
    passed: i64,
    nfts: i64,
    streak: i64,
}

/// A `benefits` row: multiplier, held tiered tokens as (token, tier), config version.
type BenefitRow = (i64, Vec<(String, String)>, i64);

/// An `nfts` row: owner, tier, burned, (block, log index).
type NftRow = (Option<String>, Option<String>, bool, (i64, i64));

/// Everything the script's end state is judged on.
#[derive(Debug, PartialEq, Eq)]
struct EndState {
    achievements: BTreeSet<AchievementRow>,
    /// Status and tally by proposal id.
    proposals: BTreeMap<String, (String, Tally)>,
    /// Votes each ProposalActor refused, by proposal id (also for proposals never created).
    refused: BTreeMap<String, u64>,
    votes: BTreeMap<(String, String), VoteRow>,
    benefits: BTreeMap<String, BenefitRow>,
    users: BTreeMap<String, UserRow>,
    nfts: BTreeMap<String, NftRow>,
}

impl EndState {
    /// What differs from `expected`, part by part: each differing part's name with its
    /// differing entries (empty when nothing does).
    fn differences(&self, expected: &EndState) -> Vec<(&'static str, String)> {
        let mut achievements = String::new();
        for a in self.achievements.difference(&expected.achievements) {
            achievements += &format!("  unexpected {a:?}\n");
        }
        for a in expected.achievements.difference(&self.achievements) {
            achievements += &format!("  missing {a:?}\n");
        }
        let parts = [
            ("achievements", achievements),
            (
                "tallies (proposal status and tally)",
                diff_maps(&self.proposals, &expected.proposals),
            ),
            ("refused votes", diff_maps(&self.refused, &expected.refused)),
            (
                "vote weights (choice, weight, boosts)",
                diff_maps(&self.votes, &expected.votes),
            ),
            ("benefits", diff_maps(&self.benefits, &expected.benefits)),
            ("user counters", diff_maps(&self.users, &expected.users)),
            ("nfts", diff_maps(&self.nfts, &expected.nfts)),
        ];
        parts.into_iter().filter(|(_, d)| !d.is_empty()).collect()
    }
}

/// The entries of `got` and `expected` that differ, one line each ("" when none does).
fn diff_maps<K: Ord + Debug, V: PartialEq + Debug>(
    got: &BTreeMap<K, V>,
    expected: &BTreeMap<K, V>,
) -> String {
    let keys: BTreeSet<&K> = got.keys().chain(expected.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (g, e) = (got.get(k), expected.get(k));
        if g != e {
            out += &format!("  [{k:?}]: got {g:?}, expected {e:?}\n");
        }
    }
    out
}

/// Fails, after `context`, naming each part of the end state that differs from `expected`
/// (achievements, tallies, refused votes, vote weights, benefits, user counters, nfts) with
/// what differs in it.
fn assert_same_end_state(got: &EndState, expected: &EndState, context: &str) {
    let diffs = got.differences(expected);
    let parts: Vec<&str> = diffs.iter().map(|(part, _)| *part).collect();
    let details: String = diffs
        .iter()
        .map(|(part, diff)| format!("{part}:\n{diff}"))
        .collect();
    assert!(
        diffs.is_empty(),
        "{context}: the {} differ:\n{details}",
        parts.join(", ")
    );
}

/// Waits until the store holds `expected`; after `secs`, fails naming the parts that differ.
async fn wait_end_state(secs: u64, store: &Store, expected: &EndState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = read_end_state(store).await;
        if got.differences(expected).is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            assert_same_end_state(
                &got,
                expected,
                "timed out waiting for the script's end state",
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn boosts_of(v: &Value) -> Vec<(String, String, u64)> {
    v.as_array()
        .expect("boosts is an array")
        .iter()
        .map(|b| {
            (
                b["token"].as_str().expect("token").to_string(),
                b["tier"].as_str().expect("tier").to_string(),
                b["bonus_bps"].as_u64().expect("bonus"),
            )
        })
        .collect()
}

fn held_of(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .expect("boosting_nfts is an array")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().expect("token").to_string(),
                pair[1].as_str().expect("tier").to_string(),
            )
        })
        .collect()
}

/// Every row of entity `E`'s table (`what` names it in a failure).
async fn all<E: EntityTrait>(store: &Store, what: &str) -> Vec<E::Model> {
    E::find().all(store.db()).await.expect(what)
}

async fn read_achievements(store: &Store) -> BTreeSet<AchievementRow> {
    all::<achievement::Entity>(store, "read achievements")
        .await
        .into_iter()
        .map(|a| AchievementRow {
            user: a.user,
            rule: a.rule_id,
            tier: a.tier,
            rule_version: a.rule_version,
            id: a.id,
            token: a.token_id,
            state: a.state,
        })
        .collect()
}

async fn read_benefits(store: &Store) -> BTreeMap<String, BenefitRow> {
    all::<benefit::Entity>(store, "read benefits")
        .await
        .into_iter()
        .map(|b| {
            (
                b.user,
                (
                    b.multiplier_bps,
                    held_of(&b.boosting_nfts),
                    b.config_version,
                ),
            )
        })
        .collect()
}

async fn read_votes(store: &Store) -> BTreeMap<(String, String), VoteRow> {
    all::<vote::Entity>(store, "read votes")
        .await
        .into_iter()
        .map(|v| {
            (
                (v.proposal_id, v.voter),
                VoteRow {
                    choice: v.choice,
                    weight: v.weight,
                    boosts: boosts_of(&v.boosts),
                    event_id: v.event_id,
                },
            )
        })
        .collect()
}

async fn read_proposals(store: &Store) -> BTreeMap<String, (String, Tally)> {
    all::<proposal::Entity>(store, "read proposals")
        .await
        .into_iter()
        .map(|p| {
            let tally = serde_json::from_value(p.tally).expect("tally");
            (p.id, (p.status, tally))
        })
        .collect()
}

async fn read_refused(store: &Store) -> BTreeMap<String, u64> {
    actor::Entity::find()
        .filter(actor::Column::Kind.eq(ActorKind::Proposal.as_str()))
        .all(store.db())
        .await
        .expect("read proposal actors")
        .into_iter()
        .map(|a| {
            let refused = a.state["refused_votes"].as_u64().expect("refused_votes");
            (a.key, refused)
        })
        .collect()
}

async fn read_users(store: &Store) -> BTreeMap<String, UserRow> {
    all::<user::Entity>(store, "read users")
        .await
        .into_iter()
        .map(|u| {
            let counter = |k: &str| u.counters[k].as_i64().expect("counter");
            let row = UserRow {
                created: u.proposals_created,
                votes: u.votes_cast,
                passed: counter("proposals_passed"),
                nfts: counter("nfts_held"),
                streak: counter("longest_streak"),
            };
            (u.address, row)
        })
        .collect()
}

async fn read_nfts(store: &Store) -> BTreeMap<String, NftRow> {
    all::<nft::Entity>(store, "read nfts")
        .await
        .into_iter()
        .map(|n| {
            (
                n.token_id,
                (n.owner, n.tier, n.burned, (n.last_block, n.last_log_index)),
            )
        })
        .collect()
}

async fn read_end_state(store: &Store) -> EndState {
    EndState {
        achievements: read_achievements(store).await,
        proposals: read_proposals(store).await,
        refused: read_refused(store).await,
        votes: read_votes(store).await,
        benefits: read_benefits(store).await,
        users: read_users(store).await,
        nfts: read_nfts(store).await,
    }
}

async fn status_of(store: &Store, proposal_id: &str) -> Option<String> {
    proposal::Entity::find_by_id(proposal_id.to_string())
        .one(store.db())
        .await
        .expect("read proposal")
        .map(|p| p.status)
}

/// How many holding changes `user`'s actor applied: each adds one `user.benefits.changed`
/// to the user's notification log. (Not the snapshot's version: a turn may apply several
/// queued events with one write.)
async fn holding_changes_applied(store: &Store, user: u32) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::User.eq(addr(user)))
        .filter(notification::Column::Kind.eq("user.benefits.changed"))
        .count(store.db())
        .await
        .expect("notifications")
}

fn tally(for_weight: u64, against_weight: u64, abstain_weight: u64, voters: u64) -> Tally {
    Tally {
        for_weight,
        against_weight,
        abstain_weight,
        voters,
    }
}

fn held(tokens: &[(&str, &str)]) -> Vec<(String, String)> {
    tokens
        .iter()
        .map(|(t, tier)| (t.to_string(), tier.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. The scripted community.
// ---------------------------------------------------------------------------------------

/// Seconds after the script starts when proposals p1..p5 close (the deadline timer closes
/// them). Every vote on them is applied well before; the script checks it.
const CLOSE_AFTER_SECS: i64 = 15;

/// The proposals, created in this order (so their sequence numbers are 1..=10):
/// (id, creator, opens after (s), closes after (s), quorum, threshold bps).
const PROPOSALS: [(&str, u32, i64, i64, u64, u16); 10] = [
    ("p1", 0, -3_600, CLOSE_AFTER_SECS, 3_000, 5_000),
    ("p2", 0, -3_600, CLOSE_AFTER_SECS, 1_000, 5_000),
    ("p3", 0, -3_600, CLOSE_AFTER_SECS, 1_000, 5_000),
    ("p4", 1, -3_600, CLOSE_AFTER_SECS, 1_000, 5_000),
    ("p5", 1, -3_600, CLOSE_AFTER_SECS, 100_000, 5_000),
    ("p6", 2, -3_600, WEEK_SECS, 1_000, 5_000),
    ("p7", 2, -3_600, WEEK_SECS, 1_000, 5_000),
    ("p8", 3, -3_600, WEEK_SECS, 1_000, 6_000),
    ("p9", 4, -3_600, WEEK_SECS, 1_000, 5_000),
    // Pending when created; the deadline timer opens it 3 s into the script.
    ("p10", 5, 3, WEEK_SECS, 1_000, 5_000),
];

const WEEK_SECS: i64 = 7 * 24 * 3_600;

/// One run of the script: its node, its name, when it started, how many times each
/// producer event is published, and every producer event it published (once).
struct Script {
    c: Community,
    name: String,
    t0: DateTime<Utc>,
    copies: usize,
    sent: Vec<Envelope>,
}

impl Script {
    /// Publishes `envs` `copies` times over and records them as sent.
    async fn send(&mut self, envs: Vec<Envelope>) {
        self.c.publish(&envs, self.copies).await;
        self.sent.extend(envs);
    }
}

/// Runs the script on a fresh database and vhost, every producer event published `copies`
/// times, and returns the end state.
async fn run_script(name: &str, copies: usize) -> EndState {
    let mut s = Script {
        c: Community::start(name).await,
        name: name.to_string(),
        t0: Utc::now(),
        copies,
        sent: Vec::new(),
    };
    script_creates_proposals(&mut s).await;
    script_mints_and_moves_nfts(&mut s).await;
    script_votes_first_round(&mut s).await;
    script_moves_gold_to_u7(&mut s).await;
    script_opens_and_closes_by_deadline(&mut s).await;
    script_end(s).await
}

/// Proposals one at a time, so that their sequence numbers follow the list (streaks
/// depend on them). A duplicate creation must not take a second number. Then the
/// creators' first-proposal achievements.
async fn script_creates_proposals(s: &mut Script) {
    let secs = chrono::Duration::seconds;
    for (p, creator, opens, closes, quorum, threshold) in PROPOSALS {
        let env = created(
            &format!("create:{p}"),
            p,
            creator,
            s.t0 + secs(opens),
            s.t0 + secs(closes),
            quorum,
            threshold,
        );
        s.send(vec![env]).await;
        let store = &s.c.store;
        eventually(60, &format!("{p} is created"), move || async move {
            status_of(store, p).await.is_some()
        })
        .await;
    }
    let store = &s.c.store;
    settles(
        60,
        "each creator's first-proposal achievement",
        || async move { read_achievements(store).await.len() },
        &6,
    )
    .await;
}

/// u0's first-proposal achievement, which the script mints as an NFT.
fn u0_badge() -> uuid::Uuid {
    achievement_id(&wallet(0), &"first-proposal".parse().expect("rule"), 1)
}

/// The token id of u0's badge.
fn badge_token() -> String {
    achievement_token(u0_badge()).to_string()
}

/// NFTs, in chain order per token. u0's badge is minted with a tier that comes from the
/// achievement (the mint does not carry one). u7 ends with nothing (its bronze moves on,
/// its gold is burned); u8 holds four golds, two silvers and a bronze (five boost, capped
/// at x3); u9 holds a silver and a token without a tier (which boosts nothing).
fn nft_changes() -> Vec<Envelope> {
    vec![
        ev(
            "mint:badge",
            Utc::now(),
            NftMinted {
                token: achievement_token(u0_badge()),
                to: wallet(0),
                achievement_id: Some(u0_badge()),
                tier: None,
                chain: chain(9, 0),
            },
        ),
        mint(1, 6, Some("gold"), 10, 0),
        mint(2, 6, Some("silver"), 10, 1),
        mint(3, 7, Some("bronze"), 11, 0),
        mint(4, 7, Some("gold"), 11, 1),
        mint(5, 8, Some("gold"), 12, 0),
        mint(11, 8, Some("gold"), 12, 1),
        mint(12, 8, Some("gold"), 12, 2),
        mint(13, 8, Some("gold"), 12, 3),
        mint(6, 8, Some("silver"), 12, 4),
        mint(7, 8, Some("silver"), 12, 5),
        mint(8, 8, Some("bronze"), 12, 6),
        mint(14, 9, None, 13, 0),
        transfer(2, 6, 9, 14, 0),
        transfer(3, 7, 10, 14, 1),
        transfer(3, 10, 11, 15, 0),
        burn(4, 7, 16, 0),
    ]
}

/// The tiered tokens u8 holds.
fn u8_held() -> Vec<(String, String)> {
    held(&[
        ("11", "gold"),
        ("12", "gold"),
        ("13", "gold"),
        ("5", "gold"),
        ("6", "silver"),
        ("7", "silver"),
        ("8", "bronze"),
    ])
}

/// The benefits once every NFT change of [`nft_changes`] is applied (u6 holds gold #1).
fn benefits_after_nfts() -> BTreeMap<String, BenefitRow> {
    [
        // u0's first-proposal badge, minted without a tier: bronze, from its achievement.
        (0, (11_000, held(&[(badge_token().as_str(), "bronze")]), 0)),
        (6, (15_000, held(&[("1", "gold")]), 0)),
        (7, (10_000, vec![], 0)),
        (8, (30_000, u8_held(), 0)),
        (9, (12_500, held(&[("2", "silver")]), 0)),
        (10, (10_000, vec![], 0)),
        (11, (11_000, held(&[("3", "bronze")]), 0)),
    ]
    .into_iter()
    .map(|(u, row)| (addr(u), row))
    .collect()
}

/// The benefits once gold #1 moved from u6 to u7: the script's final benefits.
fn benefits_after_gold_moves() -> BTreeMap<String, BenefitRow> {
    let mut rows = benefits_after_nfts();
    rows.insert(addr(6), (10_000, vec![], 0));
    rows.insert(addr(7), (15_000, held(&[("1", "gold")]), 0));
    rows
}

/// The NFTs reach their holders' benefits, and every holding change is applied.
async fn script_mints_and_moves_nfts(s: &mut Script) {
    s.send(nft_changes()).await;
    let store = &s.c.store;
    settles(
        60,
        "the NFTs reach their holders' benefits",
        || read_benefits(store),
        &benefits_after_nfts(),
    )
    .await;
    // And every holding change was applied (an intermediate state could look final: u7
    // holds nothing between losing its bronze and gaining its gold).
    settles(
        60,
        "each holder applied all its holding changes",
        || async move {
            let mut versions = Vec::new();
            for u in 6..=11 {
                versions.push(holding_changes_applied(store, u).await);
            }
            versions
        },
        &vec![3, 4, 7, 2, 2, 1],
    )
    .await;
}

/// A cancellation of `proposal` by `by`.
fn cancel(label: &str, proposal: &str, by: u32, reason: &str) -> Envelope {
    ev(
        label,
        Utc::now(),
        ProposalCancelled {
            proposal: proposal.parse().expect("id"),
            by: wallet(by),
            reason: reason.into(),
        },
    )
}

/// The first round of votes. u6 (gold, x1.5) and u11 (bronze, x1.1) vote on p1..p9; u8
/// votes x3 (capped). Five are refused; p6 is cancelled (once by someone who may not).
fn first_round_votes(t0: DateTime<Utc>) -> Vec<Envelope> {
    use VoteChoice::{Abstain as Ab, Against as A, For as F};
    vec![
        vote("p1", 6, F),
        vote("p1", 8, F),
        vote("p1", 11, A),
        vote("p1", 9, Ab),
        vote("p1", 10, A),
        // Refused: u10 already voted on p1 (the first vote is final).
        vote_at("p1", 10, F, ":again", Utc::now()),
        vote("p2", 6, F),
        vote("p2", 11, F),
        vote("p2", 7, A),
        vote("p3", 6, F),
        vote("p3", 11, Ab),
        vote("p3", 8, A),
        vote("p3", 9, F),
        vote("p3", 10, F),
        vote("p4", 6, F),
        vote("p4", 8, A),
        vote("p4", 11, F),
        vote("p5", 6, F),
        vote("p5", 11, F),
        vote("p6", 6, F),
        vote("p6", 11, A),
        vote("p6", 7, F),
        // Ignored: only the creator (u2) may cancel.
        cancel("cancel:p6:u3", "p6", 3, "not mine"),
        cancel("cancel:p6:u2", "p6", 2, "withdrawn"),
        // Refused: p6 is cancelled.
        vote("p6", 9, F),
        vote("p7", 6, F),
        vote("p7", 11, F),
        vote("p7", 8, F),
        vote("p7", 9, A),
        // Refused: stamped before p7 opened.
        vote_at("p7", 10, F, ":early", t0 - chrono::Duration::hours(2)),
        vote("p8", 6, A),
        vote("p8", 11, F),
        vote("p9", 6, F),
        vote("p9", 11, F),
        vote("p9", 10, Ab),
        // Refused: p10 opens 3 s after t0.
        vote_at("p10", 9, F, ":early", t0),
        // Refused: no such proposal.
        vote("ghost", 7, F),
    ]
}

/// Votes each ProposalActor refused, by proposal id: the same after the first round and
/// at the end.
fn refused_votes() -> BTreeMap<String, u64> {
    [
        ("ghost", 1),
        ("p1", 1),
        ("p10", 1),
        ("p2", 0),
        ("p3", 0),
        ("p4", 0),
        ("p5", 0),
        ("p6", 1),
        ("p7", 1),
        ("p8", 0),
        ("p9", 0),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_string(), n))
    .collect()
}

/// The first round is counted, and its refused votes are refused.
async fn script_votes_first_round(s: &mut Script) {
    s.send(first_round_votes(s.t0)).await;
    let store = &s.c.store;
    settles(
        60,
        "the first round of votes is counted",
        || async move { read_votes(store).await.len() },
        &30,
    )
    .await;
    settles(
        60,
        "the refused votes are refused",
        || read_refused(store),
        &refused_votes(),
    )
    .await;
}

/// u6's gold moves to u7: it already boosted u6's votes on p1..p9, so on those proposals
/// it boosts nobody again. u7's late votes are counted before p1..p5 close.
async fn script_moves_gold_to_u7(s: &mut Script) {
    use VoteChoice::{Against as A, For as F};
    s.send(vec![transfer(1, 6, 7, 20, 0)]).await;
    let store = &s.c.store;
    settles(
        60,
        "the gold reaches u7",
        || read_benefits(store),
        &benefits_after_gold_moves(),
    )
    .await;
    s.send(vec![vote("p1", 7, F), vote("p7", 7, A)]).await;
    let store = &s.c.store;
    settles(
        60,
        "u7's late votes are counted",
        || async move { read_votes(store).await.len() },
        &32,
    )
    .await;
    let (name, t0) = (&s.name, s.t0);
    let elapsed = (Utc::now() - t0).num_milliseconds();
    println!("{name}: votes on p1..p5 applied {elapsed} ms into the script");
    assert!(
        Utc::now() < t0 + chrono::Duration::seconds(CLOSE_AFTER_SECS),
        "the script ran past the closing deadline of p1..p5 (the machine is too slow for \
         this test's 15 s budget); the expected tallies assume every vote came first"
    );
}

/// p10 opens by the deadline timer; then four votes, u7 now boosted by the gold. p1..p5
/// close by the deadline timer; then p1 is executed. Executing the defeated p4 is ignored.
async fn script_opens_and_closes_by_deadline(s: &mut Script) {
    use VoteChoice::{Abstain as Ab, Against as A, For as F};
    let store = &s.c.store;
    eventually(60, "p10 opens", move || async move {
        status_of(store, "p10").await.as_deref() == Some("active")
    })
    .await;
    let p10 = vec![
        vote("p10", 11, F),
        vote("p10", 7, F),
        vote("p10", 8, Ab),
        vote("p10", 10, A),
    ];
    s.send(p10).await;
    let store = &s.c.store;
    for p in ["p1", "p2", "p3", "p4", "p5"] {
        eventually(90, &format!("{p} closes"), move || async move {
            matches!(
                status_of(store, p).await.as_deref(),
                Some("succeeded" | "defeated")
            )
        })
        .await;
    }
    let execute = |p: &str, by: u32| {
        ev(
            &format!("execute:{p}"),
            Utc::now(),
            ProposalExecuted {
                proposal: p.parse().expect("id"),
                by: wallet(by),
            },
        )
    };
    s.send(vec![execute("p1", 0), execute("p4", 1)]).await;
}

/// The store reaches the end state computed by hand and keeps it once the node is idle;
/// nothing is dead-lettered; every extra copy was absorbed as a duplicate.
async fn script_end(s: Script) -> EndState {
    let store = &s.c.store;
    let expected = expected_end_state();
    wait_end_state(90, store, &expected).await;
    // Nothing is still on its way that could change it (a doubled effect would show here).
    s.c.wait_quiescent().await;
    let end = read_end_state(store).await;
    assert_same_end_state(
        &end,
        &expected,
        "the end state changed once the node was idle",
    );
    let dead = common::all_dead_letters(s.c.producer.as_ref(), store).await;
    assert!(dead.is_empty(), "nothing is dead-lettered: {dead:?}");
    assert_duplicates_absorbed(&s);
    s.c.stop().await;
    end
}

/// Every copy beyond the first was absorbed as a duplicate by each kind it addresses.
fn assert_duplicates_absorbed(s: &Script) {
    let status = s.c.node.status();
    let copies = s.copies;
    for kind in ActorKind::ALL {
        let published = s
            .sent
            .iter()
            .filter(|e| e.event_type().handlers().contains(&kind))
            .count();
        let duplicates = status
            .registries
            .iter()
            .find(|r| r.kind == kind.as_str())
            .expect("registry")
            .duplicates;
        let least = ((copies - 1) * published) as u64;
        assert!(
            duplicates >= least,
            "{kind}: {duplicates} duplicates absorbed, expected at least {least} \
             ({published} events published {copies} times)"
        );
    }
}

/// The end state of the script, computed by hand.
fn expected_end_state() -> EndState {
    EndState {
        achievements: expected_achievements(),
        proposals: expected_proposals(),
        refused: refused_votes(),
        votes: expected_votes(),
        benefits: benefits_after_gold_moves(),
        users: expected_users(),
        nfts: expected_nfts(),
    }
}

/// The boosts on `voter`'s vote on `proposal`.
///
/// Weights (1000 = a plain vote): u6 holds gold #1 until after the first round (x1.5 →
/// 1500); u8 holds 4 golds + 2 silvers + a bronze: the four golds add 4 × 5000 bps and
/// reach the x3 cap → 3000, so only they boost (a token that adds nothing is not used); u9 a silver (x1.25 → 1250); u11 a bronze (x1.1 → 1100);
/// u7 and u10 nothing (1000) — until u7 receives gold #1, which boosts only on p10, the
/// one proposal where it boosted nobody yet.
fn expected_boosts(voter: u32, proposal: &str) -> Vec<(String, String, u64)> {
    let boosts = |tokens: &[(&str, &str, u64)]| {
        tokens
            .iter()
            .map(|(t, tier, b)| (t.to_string(), tier.to_string(), *b))
            .collect()
    };
    let gold1 = [("1", "gold", 5_000)];
    match voter {
        6 => boosts(&gold1),
        7 if proposal == "p10" => boosts(&gold1),
        8 => boosts(&[
            ("11", "gold", 5_000),
            ("12", "gold", 5_000),
            ("13", "gold", 5_000),
            ("5", "gold", 5_000),
        ]),
        9 => boosts(&[("2", "silver", 2_500)]),
        11 => boosts(&[("3", "bronze", 1_000)]),
        _ => vec![],
    }
}

/// (proposal, voter, choice, weight) of every counted vote.
const COUNTED: [(&str, u32, &str, i64); 36] = [
    ("p1", 6, "for", 1_500),
    ("p1", 8, "for", 3_000),
    ("p1", 11, "against", 1_100),
    ("p1", 9, "abstain", 1_250),
    ("p1", 10, "against", 1_000),
    ("p1", 7, "for", 1_000),
    ("p2", 6, "for", 1_500),
    ("p2", 11, "for", 1_100),
    ("p2", 7, "against", 1_000),
    ("p3", 6, "for", 1_500),
    ("p3", 11, "abstain", 1_100),
    ("p3", 8, "against", 3_000),
    ("p3", 9, "for", 1_250),
    ("p3", 10, "for", 1_000),
    ("p4", 6, "for", 1_500),
    ("p4", 8, "against", 3_000),
    ("p4", 11, "for", 1_100),
    ("p5", 6, "for", 1_500),
    ("p5", 11, "for", 1_100),
    ("p6", 6, "for", 1_500),
    ("p6", 11, "against", 1_100),
    ("p6", 7, "for", 1_000),
    ("p7", 6, "for", 1_500),
    ("p7", 11, "for", 1_100),
    ("p7", 8, "for", 3_000),
    ("p7", 9, "against", 1_250),
    ("p7", 7, "against", 1_000),
    ("p8", 6, "against", 1_500),
    ("p8", 11, "for", 1_100),
    ("p9", 6, "for", 1_500),
    ("p9", 11, "for", 1_100),
    ("p9", 10, "abstain", 1_000),
    ("p10", 11, "for", 1_100),
    ("p10", 7, "for", 1_500),
    ("p10", 8, "abstain", 3_000),
    ("p10", 10, "against", 1_000),
];

fn expected_votes() -> BTreeMap<(String, String), VoteRow> {
    COUNTED
        .iter()
        .map(|&(p, voter, choice, weight)| {
            (
                (p.to_string(), addr(voter)),
                VoteRow {
                    choice: choice.to_string(),
                    weight,
                    boosts: expected_boosts(voter, p),
                    event_id: id(&format!("vote:{p}:u{voter}")).to_string(),
                },
            )
        })
        .collect()
}

fn expected_proposals() -> BTreeMap<String, (String, Tally)> {
    [
        // for 1500+3000+1000, against 1100+1000, abstain 1250: 72% for, quorum 3000 met.
        ("p1", "executed", tally(5_500, 2_100, 1_250, 6)),
        ("p2", "succeeded", tally(2_600, 1_000, 0, 3)),
        // 3750 for vs 3000 against: 55.6% ≥ 50%.
        ("p3", "succeeded", tally(3_750, 3_000, 1_100, 5)),
        // 2600 for vs 3000 against.
        ("p4", "defeated", tally(2_600, 3_000, 0, 3)),
        // All for, but 2600 < quorum 100000.
        ("p5", "defeated", tally(2_600, 0, 0, 2)),
        // The tally when it was cancelled; the vote after it refused.
        ("p6", "cancelled", tally(2_500, 1_100, 0, 3)),
        ("p7", "active", tally(5_600, 2_250, 0, 5)),
        ("p8", "active", tally(1_100, 1_500, 0, 2)),
        ("p9", "active", tally(2_600, 0, 1_000, 3)),
        ("p10", "active", tally(2_600, 1_000, 3_000, 4)),
    ]
    .into_iter()
    .map(|(p, status, t)| (p.to_string(), (status.to_string(), t)))
    .collect()
}

fn expected_achievements() -> BTreeSet<AchievementRow> {
    [
        unlocked(0, "first-proposal", "bronze", 0),
        // p1, p2 and p3 succeeded.
        unlocked(0, "passed-3", "gold", 0),
        unlocked(1, "first-proposal", "bronze", 0),
        unlocked(2, "first-proposal", "bronze", 0),
        unlocked(3, "first-proposal", "bronze", 0),
        unlocked(4, "first-proposal", "bronze", 0),
        unlocked(5, "first-proposal", "bronze", 0),
        // Voted on seqs 1..9: a streak of 9, but 9 votes (< 10).
        unlocked(6, "streak-5", "gold", 0),
        // Voted on seqs 1..10.
        unlocked(11, "streak-5", "gold", 0),
        unlocked(11, "voter-10", "silver", 0),
    ]
    .into_iter()
    .collect()
}

fn expected_users() -> BTreeMap<String, UserRow> {
    let user = |created, votes, passed, nfts, streak| UserRow {
        created,
        votes,
        passed,
        nfts,
        streak,
    };
    [
        (0, user(3, 0, 3, 1, 0)),
        (1, user(2, 0, 0, 0, 0)),
        (2, user(2, 0, 0, 0, 0)),
        (3, user(1, 0, 0, 0, 0)),
        (4, user(1, 0, 0, 0, 0)),
        (5, user(1, 0, 0, 0, 0)),
        (6, user(0, 9, 0, 0, 9)),
        // seqs {1, 2, 6, 7, 10}; holds gold #1.
        (7, user(0, 5, 0, 1, 2)),
        // seqs {1, 3, 4, 7, 10}: five votes, no streak of five.
        (8, user(0, 5, 0, 7, 2)),
        // seqs {1, 3, 7}; holds silver #2 and the untiered #14.
        (9, user(0, 3, 0, 2, 1)),
        // seqs {1, 3, 9, 10}.
        (10, user(0, 4, 0, 0, 2)),
        (11, user(0, 10, 0, 1, 10)),
    ]
    .into_iter()
    .map(|(u, row)| (addr(u), row))
    .collect()
}

fn expected_nfts() -> BTreeMap<String, NftRow> {
    let nft = |owner: Option<u32>, tier: Option<&str>, burned, block, log| {
        (
            owner.map(addr),
            tier.map(str::to_string),
            burned,
            (block, log),
        )
    };
    let badge = badge_token();
    [
        (badge.as_str(), nft(Some(0), Some("bronze"), false, 9, 0)),
        ("1", nft(Some(7), Some("gold"), false, 20, 0)),
        ("2", nft(Some(9), Some("silver"), false, 14, 0)),
        ("3", nft(Some(11), Some("bronze"), false, 15, 0)),
        ("4", nft(None, Some("gold"), true, 16, 0)),
        ("5", nft(Some(8), Some("gold"), false, 12, 0)),
        ("11", nft(Some(8), Some("gold"), false, 12, 1)),
        ("12", nft(Some(8), Some("gold"), false, 12, 2)),
        ("13", nft(Some(8), Some("gold"), false, 12, 3)),
        ("6", nft(Some(8), Some("silver"), false, 12, 4)),
        ("7", nft(Some(8), Some("silver"), false, 12, 5)),
        ("8", nft(Some(8), Some("bronze"), false, 12, 6)),
        ("14", nft(Some(9), None, false, 13, 0)),
    ]
    .into_iter()
    .map(|(t, row)| (t.to_string(), row))
    .collect()
}

/// ~12 users, 10 proposals (five closed by the deadline timer, one cancelled, one
/// executed, one opened by the timer), 41 votes of which 5 refused, 18 NFT changes: the
/// end state is exactly the one computed by hand — and it is the same again when every
/// producer event is published twice.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn scripted_community_ends_in_the_expected_state_even_with_every_event_delivered_twice() {
    run_in_system(async {
        let once = run_script("script-once", 1).await;
        let twice = run_script("script-twice", 2).await;
        assert_same_end_state(
            &twice,
            &once,
            "delivering every event twice changed the end state",
        );
    });
}
// ---------------------------------------------------------------------------------------
// 2. One NFT, one boost per proposal.
// ---------------------------------------------------------------------------------------

async fn vote_row(store: &Store, proposal_id: &str, voter: u32) -> Option<VoteRow> {
    read_votes(store)
        .await
        .remove(&(proposal_id.to_string(), addr(voter)))
}

async fn tally_of(store: &Store, proposal_id: &str) -> Option<Tally> {
    read_proposals(store)
        .await
        .remove(proposal_id)
        .map(|(_, t)| t)
}

fn open_proposal(proposal_id: &str) -> Envelope {
    let now = Utc::now();
    created(
        &format!("create:{proposal_id}"),
        proposal_id,
        99,
        now - chrono::Duration::minutes(1),
        now + chrono::Duration::days(7),
        1,
        5_000,
    )
}

/// The voters of the revote test: A first holds the gold, B receives it.
const A: u32 = 1;
const B: u32 = 2;

/// The benefits while `owner` (A or B) holds gold #42 and the other holds nothing.
fn gold_held_by(owner: u32) -> BTreeMap<String, BenefitRow> {
    let mut rows = BTreeMap::new();
    rows.insert(addr(owner), (15_000, held(&[("42", "gold")]), 0));
    rows.insert(addr(A + B - owner), (10_000, vec![], 0));
    rows
}

/// The boost gold #42 gives.
fn gold42() -> Vec<(String, String, u64)> {
    vec![("42".to_string(), "gold".to_string(), 5_000)]
}

/// The `votes` row expected for the event labelled `label`.
fn vote_row_for(
    choice: &str,
    weight: i64,
    boosts: Vec<(String, String, u64)>,
    label: &str,
) -> Option<VoteRow> {
    Some(VoteRow {
        choice: choice.to_string(),
        weight,
        boosts,
        event_id: id(label).to_string(),
    })
}

/// The revote test's name for `user` (A or B).
fn who(user: u32) -> &'static str {
    if user == A {
        "A"
    } else {
        "B"
    }
}

/// `voter` votes for `proposal`, and its `votes` row settles to `expected`.
async fn votes_for(c: &Community, proposal: &str, voter: u32, expected: Option<VoteRow>) {
    c.publish(&[vote(proposal, voter, VoteChoice::For)], 1)
        .await;
    settles(
        60,
        &format!("{}'s vote on {proposal}", who(voter)),
        || vote_row(&c.store, proposal, voter),
        &expected,
    )
    .await;
}

/// Gold #42 moves from `from` to `to` at block `block`, and the benefits settle.
async fn gold_moves(c: &Community, (from, to): (u32, u32), block: u64, what: &str) {
    c.publish(&[transfer(42, from, to, block, 0)], 1).await;
    settles(60, what, || read_benefits(&c.store), &gold_held_by(to)).await;
}

/// A holds the gold and votes on P: x1.5.
async fn check_a_votes_on_p_with_the_gold(c: &Community) {
    let store = &c.store;
    c.publish(&[mint(42, A, Some("gold"), 1, 0)], 1).await;
    let only_a: BTreeMap<_, _> = [(addr(A), (15_000, held(&[("42", "gold")]), 0))]
        .into_iter()
        .collect();
    settles(60, "A holds the gold", || read_benefits(store), &only_a).await;
    votes_for(c, "P", A, vote_row_for("for", 1_500, gold42(), "vote:P:u1")).await;
}

/// The gold moves to B, who votes on P too: the gold already boosted a vote on P. On Q
/// the gold has boosted nobody yet: B's vote there is x1.5.
async fn check_the_gold_boosts_b_only_where_it_boosted_nobody(c: &Community) {
    gold_moves(c, (A, B), 2, "B holds the gold").await;
    votes_for(c, "P", B, vote_row_for("for", 1_000, vec![], "vote:P:u2")).await;
    assert_eq!(
        tally_of(&c.store, "P").await,
        Some(tally(2_500, 0, 0, 2)),
        "P counts the gold once"
    );
    votes_for(c, "Q", B, vote_row_for("for", 1_500, gold42(), "vote:Q:u2")).await;
}

/// Lent back to A: A's second vote on P is refused (the first vote is final), and A's vote
/// on Q gets no boost (the gold boosted B's vote on Q).
async fn check_the_gold_lent_back_gains_a_nothing(c: &Community) {
    let store = &c.store;
    gold_moves(c, (B, A), 3, "A holds the gold again").await;
    c.publish(
        &[
            vote_at("P", A, VoteChoice::Against, ":again", Utc::now()),
            vote("Q", A, VoteChoice::For),
        ],
        1,
    )
    .await;
    settles(
        60,
        "A's second vote on P is refused",
        || async move {
            store
                .load_actor(ActorKind::Proposal, "P")
                .await
                .expect("load P")
                .map(|(_, s)| s["refused_votes"].as_u64())
        },
        &Some(Some(1)),
    )
    .await;
    settles(
        60,
        "A's vote on Q",
        || vote_row(store, "Q", A),
        &vote_row_for("for", 1_000, vec![], "vote:Q:u1"),
    )
    .await;
    assert_eq!(
        vote_row(store, "P", A).await,
        vote_row_for("for", 1_500, gold42(), "vote:P:u1"),
        "A's first vote on P stands"
    );
}

/// Each proposal counts two votes of 2500 in all, and each voter two votes.
async fn check_the_tallies_count_the_gold_once_per_proposal(c: &Community) {
    let store = &c.store;
    assert_eq!(tally_of(store, "P").await, Some(tally(2_500, 0, 0, 2)));
    assert_eq!(tally_of(store, "Q").await, Some(tally(2_500, 0, 0, 2)));
    settles(
        60,
        "each voter's counted votes",
        || async move {
            let users = read_users(store).await;
            [A, B].map(|u| users.get(&addr(u)).map(|r| r.votes))
        },
        &[Some(2), Some(2)],
    )
    .await;
}

#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn transfer_and_revote_gains_no_extra_weight() {
    run_in_system(async {
        let c = Community::start("revote").await;
        let store = &c.store;
        c.publish(&[open_proposal("P"), open_proposal("Q")], 1)
            .await;
        eventually(60, "P and Q are created", move || async move {
            status_of(store, "P").await.is_some() && status_of(store, "Q").await.is_some()
        })
        .await;
        check_a_votes_on_p_with_the_gold(&c).await;
        check_the_gold_boosts_b_only_where_it_boosted_nobody(&c).await;
        check_the_gold_lent_back_gains_a_nothing(&c).await;
        check_the_tallies_count_the_gold_once_per_proposal(&c).await;
        c.stop().await;
    });
}
// ---------------------------------------------------------------------------------------
// 3. A rule added at run time, and rolled back.
// ---------------------------------------------------------------------------------------

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
    Node::start(
        node_options(name, SHARDS),
        db.connect().await,
        services(name),
        rabbit(vhost).await,
    )
    .await
    .expect("node starts")
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
