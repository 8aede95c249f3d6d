//! The benefits cache inside running nodes (real PostgreSQL, a private RabbitMQ vhost, real
//! Redis): a benefits change committed on one node reaches a vote weighed on another node
//! through Redis pub/sub (and, as the control, does not without Redis); and a node whose
//! Redis is SIGKILLed and restarted mid-run still weighs every vote by the holdings of
//! its time, with nothing dead-lettered.
//!
//! Every test has its own database, vhost and Redis key prefix. The cross-node tests use
//! the shared Redis (`MERIT_TEST_REDIS_URL`, default `redis://127.0.0.1:6379`) and delete
//! their keys at the end; the restart test runs a throwaway `redis-server` of its own.

mod common;

use std::{collections::BTreeMap, process::Command, sync::Arc, time::Duration};

use common::{
    cache_config, eventually, free_port, node_options, redis_url, run_in_system, wallet, Backend,
    OwnRedis, TestDb, Vhost,
};
use merit_actors::Services;
use merit_config::ConfigHandle;
use merit_mailbox::{Outgoing, RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, NftMinted, NftTransferred, VoteChoice};
use merit_storage::{
    entities::{benefit, vote},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    CacheConfig, CacheStats, Store, TieredCache,
};
use merit_supervisors::Node;
use uuid::Uuid;

const SHARDS: u16 = 2;

/// Weight of a vote without an NFT, and with one gold NFT (+5000 bps in the built-in tiers).
const PLAIN: i64 = 1_000;
const GOLD: i64 = 1_500;

fn init_logs() {
    common::init_test_logs("warn,merit_storage::cache=info");
}

/// A cache whose entries outlive every test: only an invalidation (or a whole-L1 clear)
/// can rid a node of a value it holds.
fn long_lived(node: &str, prefix: &str) -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(600),
        ..cache_config(node, prefix)
    }
}

/// A key prefix of its own on a Redis; its keys are deleted when it is dropped (also when
/// the test fails).
struct RedisPrefix {
    prefix: String,
    url: String,
}

impl RedisPrefix {
    fn new(url: &str) -> Self {
        Self {
            prefix: format!("merit-test-{}:", Uuid::new_v4().simple()),
            url: url.to_string(),
        }
    }

    /// The cached benefits of `user` in L2, as JSON (`None` when not cached).
    fn l2_value(&self, user: Address) -> Option<serde_json::Value> {
        let out = Command::new("redis-cli")
            .args(["-u", &self.url, "--raw", "GET"])
            .arg(format!("{}benefits:{user}", self.prefix))
            .output()
            .expect("redis-cli runs (redis-tools must be installed)");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).ok()
    }

    /// How many NFTs the L2 copy of `user`'s benefits lists.
    fn l2_tokens(&self, user: Address) -> Option<usize> {
        self.l2_value(user)?["tokens"].as_array().map(Vec::len)
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let script = "local ks = redis.call('KEYS', ARGV[1]) \
                      for _, k in ipairs(ks) do redis.call('DEL', k) end return #ks";
        let _ = Command::new("redis-cli")
            .args(["-u", &self.url, "EVAL", script, "0"])
            .arg(format!("{}*", self.prefix))
            .output();
    }
}

fn mint_gold(token: u64, to: Address, block: u64) -> Outgoing {
    Outgoing::from_envelope(&Envelope::new(
        "cache-nodes-test",
        NftMinted {
            token: token.to_string().parse().expect("token id"),
            to,
            achievement_id: None,
            tier: Some("gold".parse().expect("tier id")),
            chain: common::chain_ref(block),
        },
    ))
}

fn transfer(token: u64, from: Address, to: Address, block: u64) -> Outgoing {
    Outgoing::from_envelope(&Envelope::new(
        "cache-nodes-test",
        NftTransferred {
            token: token.to_string().parse().expect("token id"),
            from,
            to,
            chain: common::chain_ref(block),
        },
    ))
}

fn vote(voter: Address, proposal: &str) -> Outgoing {
    Outgoing::from_envelope(&common::vote_cast(
        "cache-nodes-test",
        proposal,
        voter,
        VoteChoice::For,
    ))
}

fn proposal(id: &str) -> Outgoing {
    Outgoing::from_envelope(&common::open_proposal(id))
}

/// A transport on `vhost` whose connection is named `name` (so `rabbitmqctl` tells the
/// nodes apart), with the topology declared.
async fn rabbit(vhost: &Vhost, name: &str) -> Arc<RabbitTransport> {
    let transport = RabbitTransport::connect_with(
        &vhost.url,
        Topology {
            prefix: String::new(),
            shards: SHARDS,
        },
        RabbitOptions {
            connection_name: name.to_string(),
            ..RabbitOptions::default()
        },
    )
    .await
    .expect("connect to RabbitMQ");
    transport.declare().await.expect("declare");
    Arc::new(transport)
}

/// `(consumers, active consumers)` on the shard queues of `vhost` (single active consumer:
/// one active per queue, the others standing by).
fn shard_consumers(vhost: &Vhost) -> (usize, usize) {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_consumers",
            "-q",
            "--no-table-headers",
            "-p",
            &vhost.name,
        ])
        .args(["queue_name", "active"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(out.status.success(), "rabbitmqctl list_consumers failed");
    let mut counts = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split_whitespace();
        let (Some(queue), Some(active)) = (cols.next(), cols.next()) else {
            continue;
        };
        let shard_queue = ["user", "proposal", "nft"].iter().any(|kind| {
            queue
                .strip_prefix(&format!("merit.{kind}."))
                .is_some_and(|i| i.parse::<u16>().is_ok())
        });
        if shard_queue {
            counts.0 += 1;
            counts.1 += usize::from(active == "true");
        }
    }
    counts
}

/// The token ids in `user`'s `benefits` row (`None`: no row yet).
async fn held(store: &Store, user: Address) -> Option<Vec<String>> {
    let row = benefit::Entity::find_by_id(user.to_string())
        .one(store.db())
        .await
        .expect("read benefits")?;
    let tokens: Vec<(String, String)> =
        serde_json::from_value(row.boosting_nfts).expect("boosting_nfts is [[token, tier]]");
    Some(tokens.into_iter().map(|(token, _)| token).collect())
}

/// Waits until `user`'s `benefits` row lists exactly `tokens`.
async fn wait_held(store: &Store, user: Address, tokens: &[u64]) {
    let want: Vec<String> = tokens.iter().map(u64::to_string).collect();
    eventually(30, &format!("benefits of {user} are {want:?}"), || {
        let (store, want) = (store.clone(), want.clone());
        async move { held(&store, user).await.unwrap_or_default() == want }
    })
    .await;
}

/// Every recorded vote on `proposal`: voter → weight.
async fn weights(store: &Store, proposal: &str) -> BTreeMap<String, i64> {
    vote::Entity::find()
        .filter(vote::Column::ProposalId.eq(proposal))
        .all(store.db())
        .await
        .expect("read votes")
        .into_iter()
        .map(|v| (v.voter, v.weight))
        .collect()
}

async fn wait_votes(store: &Store, proposal: &str, n: usize) -> BTreeMap<String, i64> {
    eventually(45, &format!("{n} votes recorded on {proposal}"), || {
        let store = store.clone();
        async move { weights(&store, proposal).await.len() >= n }
    })
    .await;
    weights(store, proposal).await
}

fn applied(node: &Node, kind: &str) -> u64 {
    node.status()
        .registries
        .iter()
        .filter(|r| kind == "any" || r.kind == kind)
        .map(|r| r.applied)
        .sum()
}

/// What node B saw in [`vote_on_b_after_a_changed_benefits`].
struct Handover {
    /// The weight recorded for U's vote, which node B weighed.
    weight: i64,
    /// B's cache just before the vote and just after it.
    before_vote: CacheStats,
    after_vote: CacheStats,
}

/// The handover tests' nodes: A (active on every shard) and B (standing by), sharing one
/// database, vhost and Redis prefix; both caches long-lived. A always uses Redis, B only if
/// `b_uses_redis`.
struct TwoNodes {
    db: TestDb,
    store: Store,
    vhost: Vhost,
    redis: RedisPrefix,
    b_uses_redis: bool,
    services_b: Services,
    node_a: Node,
    transport_a: Arc<RabbitTransport>,
    node_b: Node,
    transport_b: Arc<RabbitTransport>,
    producer: Arc<RabbitTransport>,
}

/// Starts node `name` on `store` with `services` and its own named transport.
async fn start_node(
    name: &str,
    store: &Store,
    services: &Services,
    vhost: &Vhost,
) -> (Node, Arc<RabbitTransport>) {
    let transport = rabbit(vhost, name).await;
    let node = Node::start(
        node_options(name, SHARDS),
        store.clone(),
        services.clone(),
        transport.clone(),
    )
    .await
    .expect("node starts");
    (node, transport)
}

impl TwoNodes {
    async fn start(b_uses_redis: bool) -> Self {
        init_logs();
        let (db, store) = TestDb::migrated(Backend::Postgres).await;
        let vhost = Vhost::create();
        let redis = RedisPrefix::new(&redis_url());
        let all_shards = 3 * usize::from(SHARDS);
        let services_a = Services::new(
            ConfigHandle::default(),
            TieredCache::with_redis(long_lived("node-a", &redis.prefix), &redis.url).await,
        );
        let cache_b = if b_uses_redis {
            TieredCache::with_redis(long_lived("node-b", &redis.prefix), &redis.url).await
        } else {
            TieredCache::local(long_lived("node-b", &redis.prefix))
        };
        let services_b = Services::new(ConfigHandle::default(), cache_b);
        assert!(services_a.cache.stats().redis_up, "the shared Redis is up");
        assert_eq!(services_b.cache.stats().redis_up, b_uses_redis);

        let (node_a, transport_a) = start_node("node-a", &store, &services_a, &vhost).await;
        eventually(30, "node a consumes every shard queue", || {
            std::future::ready(shard_consumers(&vhost) == (all_shards, all_shards))
        })
        .await;
        let (node_b, transport_b) = start_node("node-b", &store, &services_b, &vhost).await;
        eventually(30, "node b stands by on every shard queue", || {
            std::future::ready(shard_consumers(&vhost) == (2 * all_shards, all_shards))
        })
        .await;
        let producer = rabbit(&vhost, "producer").await;
        Self {
            db,
            store,
            vhost,
            redis,
            b_uses_redis,
            services_b,
            node_a,
            transport_a,
            node_b,
            transport_b,
            producer,
        }
    }

    /// If B uses Redis, waits until B heard of `n` invalidations in all.
    async fn b_heard(&self, secs: u64, what: &str, n: u64) {
        if self.b_uses_redis {
            let b = self.services_b.cache.clone();
            eventually(secs, what, || {
                std::future::ready(b.stats().invalidations_received >= n)
            })
            .await;
        }
    }
}

/// U gets a gold NFT, on node A; A's write-through reaches L2 (and B hears of it).
async fn check_a_writes_the_mint_through(t: &TwoNodes, u: Address, token: u64) {
    t.producer
        .publish(vec![mint_gold(token, u, 10)])
        .await
        .expect("publish the mint");
    wait_held(&t.store, u, &[token]).await;
    eventually(10, "node a wrote U's gold NFT through to L2", || {
        std::future::ready(t.redis.l2_tokens(u) == Some(1))
    })
    .await;
    t.b_heard(10, "node b heard of the mint's write", 1).await;
}

/// B now holds U's benefits in its L1: read from L2 (what A wrote) with Redis, else from
/// the row.
async fn check_b_loads_the_benefits_into_l1(t: &TwoNodes, u: Address, token: u64) {
    let services_b = &t.services_b;
    let before_load = services_b.cache.stats();
    let seen = merit_actors::load_held(&t.store, services_b, &u.to_string())
        .await
        .expect("load U's benefits on node b");
    let seen: Vec<(String, String)> = seen
        .tokens
        .iter()
        .map(|(t, tier)| (t.clone(), tier.to_string()))
        .collect();
    assert_eq!(seen, vec![(token.to_string(), "gold".to_string())]);
    let after_load = services_b.cache.stats();
    assert_eq!(after_load.l1_misses, before_load.l1_misses + 1);
    if t.b_uses_redis {
        assert_eq!(
            (after_load.l2_hits, after_load.loads),
            (before_load.l2_hits + 1, before_load.loads),
            "node b read what node a wrote to L2"
        );
    } else {
        assert_eq!(
            after_load.loads,
            before_load.loads + 1,
            "node b read the row"
        );
    }
}

/// The NFT leaves U for V, on node A; A writes both through, B hears of both writes (with
/// Redis), and B has applied nothing.
async fn check_a_writes_the_transfer_through(t: &TwoNodes, (u, v): (Address, Address), token: u64) {
    let received = t.services_b.cache.stats().invalidations_received;
    t.producer
        .publish(vec![transfer(token, u, v, 11)])
        .await
        .expect("publish the transfer");
    wait_held(&t.store, u, &[]).await;
    wait_held(&t.store, v, &[token]).await;
    // Generous bounds: they only matter when the machine is busy (a CI run building in
    // parallel); the checks return as soon as they hold.
    eventually(
        30,
        "node a wrote U's and V's new benefits through to L2",
        || std::future::ready(t.redis.l2_tokens(u) == Some(0) && t.redis.l2_tokens(v) == Some(1)),
    )
    .await;
    t.b_heard(30, "node b heard of both writes (U and V)", received + 2)
        .await;
    assert_eq!(
        applied(&t.node_b, "any"),
        0,
        "node b stood by: node a applied everything so far"
    );
}

/// A stops; B takes its shards over and weighs U's vote; then everything stops.
async fn a_stops_and_b_weighs_the_vote(t: TwoNodes, u: Address) -> Handover {
    let all_shards = 3 * usize::from(SHARDS);
    t.node_a.shutdown(Duration::from_secs(5)).await;
    drop(t.transport_a);
    eventually(
        30,
        "node b is the active consumer of every shard queue",
        || std::future::ready(shard_consumers(&t.vhost) == (all_shards, all_shards)),
    )
    .await;
    let before_vote = t.services_b.cache.stats();
    t.producer
        .publish(vec![proposal("p-1"), vote(u, "p-1")])
        .await
        .expect("publish the proposal and the vote");
    let votes = wait_votes(&t.store, "p-1", 1).await;
    let after_vote = t.services_b.cache.stats();
    assert!(
        applied(&t.node_b, "proposal") >= 2,
        "node b applied the proposal's creation and the vote"
    );
    let weight = *votes.get(&u.to_string()).expect("U's vote is recorded");

    t.node_b.shutdown(Duration::from_secs(5)).await;
    drop((t.transport_b, t.producer));
    t.vhost.delete();
    t.db.cleanup().await;
    drop(t.redis);
    Handover {
        weight,
        before_vote,
        after_vote,
    }
}

/// Node A (active on every shard) commits U's gold NFT, node B reads U's benefits into its
/// L1, A commits the NFT's transfer away from U, A stops, B takes the shards over and
/// weighs U's vote. Both caches are long-lived and share one Redis prefix; A always uses
/// Redis, B only if `b_uses_redis`.
async fn vote_on_b_after_a_changed_benefits(b_uses_redis: bool) -> Handover {
    let t = TwoNodes::start(b_uses_redis).await;
    let (u, v, token) = (wallet(1), wallet(2), 7);
    check_a_writes_the_mint_through(&t, u, token).await;
    check_b_loads_the_benefits_into_l1(&t, u, token).await;
    check_a_writes_the_transfer_through(&t, (u, v), token).await;
    a_stops_and_b_weighs_the_vote(t, u).await
}

/// With Redis, node A's write-through drops node B's L1 copy of exactly U's benefits at
/// once: B (ttl 600 s, so expiry cannot help) weighs U's vote by the committed holdings.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn a_benefits_change_on_node_a_is_seen_by_a_vote_on_node_b_at_once() {
    run_in_system(async {
        let seen = vote_on_b_after_a_changed_benefits(true).await;
        assert_eq!(
            seen.weight, PLAIN,
            "node b weighed U's vote with a gold NFT U no longer holds"
        );
        let (before, after) = (seen.before_vote, seen.after_vote);
        assert!(
            after.invalidations_received >= 3,
            "node b applied node a's invalidations: {after:?}"
        );
        assert_eq!(
            after.l1_clears, 1,
            "only the first subscription cleared node b's L1 (no resubscription did the \
             work of the precise invalidation): {after:?}"
        );
        assert_eq!(
            (after.l1_hits, after.l1_misses, after.l2_hits, after.loads),
            (
                before.l1_hits,
                before.l1_misses + 1,
                before.l2_hits + 1,
                before.loads
            ),
            "the vote missed node b's L1 and read node a's write from L2"
        );
        assert!(after.redis_up);
    });
}

/// The control: the same sequence with node B on an L1-only cache. Nothing tells B that
/// U's benefits changed, so B weighs the vote with its stale copy — which is why nodes
/// sharing a database need Redis pub/sub (or a short ttl bounding the staleness).
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn without_redis_node_b_weighs_a_vote_with_its_stale_benefits_copy() {
    run_in_system(async {
        let seen = vote_on_b_after_a_changed_benefits(false).await;
        assert_eq!(
            seen.weight, GOLD,
            "an L1-only node b kept U's gold NFT past the transfer"
        );
        let (before, after) = (seen.before_vote, seen.after_vote);
        assert_eq!(
            after.l1_hits,
            before.l1_hits + 1,
            "the vote was served from node b's L1: {after:?}"
        );
        assert_eq!(after.invalidations_received, 0);
        assert!(!after.redis_up);
    });
}

/// Who holds which gold NFT, as the test script moves them; the source of the expected
/// weight of every vote.
#[derive(Default)]
struct Holdings(BTreeMap<Address, Vec<u64>>);

impl Holdings {
    fn weight(&self, user: Address) -> i64 {
        if self.0.get(&user).is_some_and(|t| !t.is_empty()) {
            GOLD
        } else {
            PLAIN
        }
    }

    fn give(&mut self, token: u64, to: Address) {
        self.0.entry(to).or_default().push(token);
    }

    fn take(&mut self, token: u64, from: Address) {
        self.0.entry(from).or_default().retain(|t| *t != token);
    }

    fn of(&self, user: Address) -> Vec<u64> {
        self.0.get(&user).cloned().unwrap_or_default()
    }
}

/// The Redis-restart test's script: its node's store, cache and producer, the voters (six
/// starting with a gold NFT, six without), who holds what, and every vote's expected
/// weight by (proposal, voter).
struct RedisScript {
    store: Store,
    cache: TieredCache,
    producer: Arc<RabbitTransport>,
    gold: Vec<Address>,
    plain: Vec<Address>,
    voters: Vec<Address>,
    holdings: Holdings,
    expected: BTreeMap<(String, String), i64>,
    block: u64,
}

/// The gold NFT the script first gives to `gold[i]`.
fn gold_token(i: usize) -> u64 {
    1_000 + i as u64
}

impl RedisScript {
    fn new(store: Store, cache: TieredCache, producer: Arc<RabbitTransport>) -> Self {
        let gold: Vec<Address> = (0..6).map(|i| wallet(100 + i)).collect();
        let plain: Vec<Address> = (0..6).map(|i| wallet(200 + i)).collect();
        let voters: Vec<Address> = gold.iter().chain(&plain).copied().collect();
        Self {
            store,
            cache,
            producer,
            gold,
            plain,
            voters,
            holdings: Holdings::default(),
            expected: BTreeMap::new(),
            block: 0,
        }
    }

    fn next_block(&mut self) -> u64 {
        self.block += 1;
        self.block
    }

    /// Four proposals, and a gold NFT for each gold voter.
    async fn setup(&mut self) {
        let mut setup: Vec<Outgoing> = (1..=4).map(|p| proposal(&format!("p-{p}"))).collect();
        for (i, user) in self.gold.clone().into_iter().enumerate() {
            let block = self.next_block();
            setup.push(mint_gold(gold_token(i), user, block));
            self.holdings.give(gold_token(i), user);
        }
        self.producer
            .publish(setup)
            .await
            .expect("publish the setup");
        for user in &self.gold {
            wait_held(&self.store, *user, &self.holdings.of(*user)).await;
        }
    }

    /// Moves each `(token, from, to)` and waits until both ends' `benefits` rows show it.
    async fn move_tokens(&mut self, moves: &[(u64, Address, Address)]) {
        let mut out = Vec::new();
        for &(token, from, to) in moves {
            let block = self.next_block();
            out.push(transfer(token, from, to, block));
            self.holdings.take(token, from);
            self.holdings.give(token, to);
        }
        self.producer.publish(out).await.expect("publish transfers");
        for &(_, from, to) in moves {
            for user in [from, to] {
                wait_held(&self.store, user, &self.holdings.of(user)).await;
            }
        }
    }

    /// Every voter is to vote once on `p`, each vote weighing what its voter holds now.
    fn expect_phase(&mut self, p: &str) {
        for user in &self.voters {
            self.expected.insert(
                (p.to_string(), user.to_string()),
                self.holdings.weight(*user),
            );
        }
    }

    /// The votes of `voters[range]` on `p`.
    fn votes_of(&self, p: &str, range: std::ops::Range<usize>) -> Vec<Outgoing> {
        self.voters[range].iter().map(|u| vote(*u, p)).collect()
    }

    /// A phase: every voter votes once on `p`, all published at once, and all are waited
    /// for.
    async fn phase(&mut self, p: &str) {
        self.expect_phase(p);
        self.producer
            .publish(self.votes_of(p, 0..self.voters.len()))
            .await
            .unwrap_or_else(|e| panic!("publish {p} votes: {e}"));
        wait_votes(&self.store, p, self.voters.len()).await;
    }

    /// A phase whose votes are published in two halves with `between` run in the middle.
    async fn phase_split(&mut self, p: &str, between: impl FnOnce()) {
        self.expect_phase(p);
        let half = self.voters.len() / 2;
        self.producer
            .publish(self.votes_of(p, 0..half))
            .await
            .unwrap_or_else(|e| panic!("publish {p} votes (first half): {e}"));
        between();
        self.producer
            .publish(self.votes_of(p, half..self.voters.len()))
            .await
            .unwrap_or_else(|e| panic!("publish {p} votes (second half): {e}"));
        wait_votes(&self.store, p, self.voters.len()).await;
    }

    /// Every vote counted once, with the weight of its time, and each reached its voter's
    /// UserActor.
    async fn check_every_vote_weighs_what_its_voter_held(&self) {
        let (store, expected) = (&self.store, &self.expected);
        let mut recorded = BTreeMap::new();
        for p in 1..=4 {
            let p = format!("p-{p}");
            for (voter, weight) in weights(store, &p).await {
                recorded.insert((p.clone(), voter), weight);
            }
        }
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(key, weight)| recorded.get(*key) != Some(*weight))
            .map(|(key, weight)| (key, *weight, recorded.get(key).copied()))
            .collect();
        assert!(
            wrong.is_empty(),
            "votes with a wrong weight ((proposal, voter), expected, recorded): {wrong:?}"
        );
        assert_eq!(
            recorded.len(),
            expected.len(),
            "one vote per voter per phase"
        );
        assert!(
            expected.values().any(|w| *w == GOLD) && expected.values().any(|w| *w == PLAIN),
            "the script weighs both kinds of vote"
        );
        let s = store.clone();
        let n = i64::try_from(expected.len()).expect("few votes");
        eventually(30, "every vote reached its voter's UserActor", || {
            let s = s.clone();
            async move { common::votes_counted(&s).await >= n }
        })
        .await;
        assert_eq!(common::votes_counted(store).await, n);
    }
}

/// Redis is in use again, its outage was counted, and L1 was cleared at the first
/// subscription and again at the resubscription.
fn check_the_cache_recovered(cache: &TieredCache) {
    let stats = cache.stats();
    assert!(stats.redis_up, "Redis is in use again: {stats:?}");
    assert!(
        stats.l2_errors >= 1,
        "Redis operations failed or were skipped while it was down: {stats:?}"
    );
    assert!(
        stats.l1_clears >= 2,
        "L1 was cleared at the first subscription and again at the resubscription: \
         {stats:?}"
    );
}

/// Phases 2 and 3. Phase 2: Redis is SIGKILLed with votes in flight. Then, Redis down, two
/// gold NFTs move to plain voters, and phase 3 is weighed.
async fn phases_with_redis_down(s: &mut RedisScript, server: OwnRedis) {
    s.phase_split("p-2", || server.kill()).await;
    let c = s.cache.clone();
    eventually(10, "the cache marks Redis down", || {
        std::future::ready(!c.stats().redis_up)
    })
    .await;
    let moves: Vec<_> = (0..2)
        .map(|i| (gold_token(i), s.gold[i], s.plain[i]))
        .collect();
    s.move_tokens(&moves).await;
    s.phase("p-3").await;
    assert!(
        !s.cache.stats().redis_up,
        "Redis stayed down through phase 3"
    );
}

/// Redis comes back, empty, on the same port; one NFT goes home, another moves; phase 4.
async fn phase_with_redis_back(s: &mut RedisScript, port: u16) -> OwnRedis {
    let clears_before = s.cache.stats().l1_clears;
    let server = OwnRedis::start(port);
    let c = s.cache.clone();
    eventually(20, "the cache uses Redis again", || {
        std::future::ready(c.stats().redis_up)
    })
    .await;
    assert!(
        s.cache.stats().l1_clears > clears_before,
        "the resubscription cleared L1"
    );
    let moves = [
        (gold_token(0), s.plain[0], s.gold[0]),
        (gold_token(2), s.gold[2], s.plain[2]),
    ];
    s.move_tokens(&moves).await;
    s.phase("p-4").await;
    server
}

/// A node whose Redis is SIGKILLed while votes are in flight, stays away while NFTs move
/// and more votes are weighed, and comes back (empty) on the same port before the last
/// moves and votes. NFTs move only between vote phases, and each phase waits for the
/// `benefits` rows, so every vote has exactly one right weight.
#[test]
#[ignore = "service tier: needs running services (README: Test tiers)"]
fn killing_redis_mid_run_gives_no_wrong_weight_and_no_producer_error() {
    run_in_system(async {
        init_logs();
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}");
        let server = OwnRedis::start(port);
        let (db, store) = TestDb::migrated(Backend::Postgres).await;
        let vhost = Vhost::create();
        let prefix = format!("merit-test-{}:", Uuid::new_v4().simple());
        let cache = TieredCache::with_redis(long_lived("solo", &prefix), &url).await;
        assert!(cache.stats().redis_up, "the private Redis is up");
        let services = Services::new(ConfigHandle::default(), cache.clone());
        let (node, transport) = start_node("solo", &store, &services, &vhost).await;
        let producer = rabbit(&vhost, "producer").await;
        let mut s = RedisScript::new(store.clone(), cache.clone(), producer);
        s.setup().await;

        // Phase 1, Redis up: the cache fills.
        s.phase("p-1").await;
        assert!(cache.stats().redis_up);
        phases_with_redis_down(&mut s, server).await;
        let _server = phase_with_redis_back(&mut s, port).await;

        s.check_every_vote_weighs_what_its_voter_held().await;
        let dead = common::all_dead_letters(transport.as_ref(), &store).await;
        assert!(dead.is_empty(), "dead letters: {dead:?}");
        check_the_cache_recovered(&cache);

        node.shutdown(Duration::from_secs(5)).await;
        drop((transport, s));
        vhost.delete();
        db.cleanup().await;
    });
}
