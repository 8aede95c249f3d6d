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

use std::{
    collections::BTreeMap,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use common::{
    cache_config, eventually, node_options, run_in_system, wallet, Backend, TestDb, Vhost,
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

fn redis_url() -> String {
    std::env::var("MERIT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,merit_storage::cache=info".into()),
        )
        .with_test_writer()
        .try_init();
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

/// Node A (active on every shard) commits U's gold NFT, node B reads U's benefits into its
/// L1, A commits the NFT's transfer away from U, A stops, B takes the shards over and
/// weighs U's vote. Both caches are long-lived and share one Redis prefix; A always uses
/// Redis, B only if `b_uses_redis`.
async fn vote_on_b_after_a_changed_benefits(b_uses_redis: bool) -> Handover {
    init_logs();
    let (db, store) = TestDb::migrated(Backend::Postgres).await;
    let vhost = Vhost::create();
    let redis = RedisPrefix::new(&redis_url());
    let (u, v, token) = (wallet(1), wallet(2), 7);
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

    let transport_a = rabbit(&vhost, "node-a").await;
    let node_a = Node::start(
        node_options("node-a", SHARDS),
        store.clone(),
        services_a.clone(),
        transport_a.clone(),
    )
    .await
    .expect("node a starts");
    eventually(30, "node a consumes every shard queue", || {
        std::future::ready(shard_consumers(&vhost) == (all_shards, all_shards))
    })
    .await;
    let transport_b = rabbit(&vhost, "node-b").await;
    let node_b = Node::start(
        node_options("node-b", SHARDS),
        store.clone(),
        services_b.clone(),
        transport_b.clone(),
    )
    .await
    .expect("node b starts");
    eventually(30, "node b stands by on every shard queue", || {
        std::future::ready(shard_consumers(&vhost) == (2 * all_shards, all_shards))
    })
    .await;
    let producer = rabbit(&vhost, "producer").await;

    // U gets a gold NFT, on node A; A's write-through reaches L2 (and B hears of it).
    producer
        .publish(vec![mint_gold(token, u, 10)])
        .await
        .expect("publish the mint");
    wait_held(&store, u, &[token]).await;
    eventually(10, "node a wrote U's gold NFT through to L2", || {
        std::future::ready(redis.l2_tokens(u) == Some(1))
    })
    .await;
    if b_uses_redis {
        let b = services_b.cache.clone();
        eventually(10, "node b heard of the mint's write", || {
            std::future::ready(b.stats().invalidations_received >= 1)
        })
        .await;
    }

    // B now holds U's benefits in its L1.
    let before_load = services_b.cache.stats();
    let seen = merit_actors::load_held(&store, &services_b, &u.to_string())
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
    if b_uses_redis {
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

    // The NFT leaves U, on node A.
    let received = services_b.cache.stats().invalidations_received;
    producer
        .publish(vec![transfer(token, u, v, 11)])
        .await
        .expect("publish the transfer");
    wait_held(&store, u, &[]).await;
    wait_held(&store, v, &[token]).await;
    // Generous bounds: they only matter when the machine is busy (a CI run building in
    // parallel); the checks return as soon as they hold.
    eventually(
        30,
        "node a wrote U's and V's new benefits through to L2",
        || std::future::ready(redis.l2_tokens(u) == Some(0) && redis.l2_tokens(v) == Some(1)),
    )
    .await;
    if b_uses_redis {
        let b = services_b.cache.clone();
        eventually(30, "node b heard of both writes (U and V)", || {
            std::future::ready(b.stats().invalidations_received >= received + 2)
        })
        .await;
    }
    assert_eq!(
        applied(&node_b, "any"),
        0,
        "node b stood by: node a applied everything so far"
    );

    // A stops; B takes its shards over and weighs U's vote.
    node_a.shutdown(Duration::from_secs(5)).await;
    drop(transport_a);
    eventually(
        30,
        "node b is the active consumer of every shard queue",
        || std::future::ready(shard_consumers(&vhost) == (all_shards, all_shards)),
    )
    .await;
    let before_vote = services_b.cache.stats();
    producer
        .publish(vec![proposal("p-1"), vote(u, "p-1")])
        .await
        .expect("publish the proposal and the vote");
    let votes = wait_votes(&store, "p-1", 1).await;
    let after_vote = services_b.cache.stats();
    assert!(
        applied(&node_b, "proposal") >= 2,
        "node b applied the proposal's creation and the vote"
    );
    let weight = *votes.get(&u.to_string()).expect("U's vote is recorded");

    node_b.shutdown(Duration::from_secs(5)).await;
    drop((transport_b, producer));
    vhost.delete();
    db.cleanup().await;
    Handover {
        weight,
        before_vote,
        after_vote,
    }
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

/// A `redis-server` of this test's own, on `port`; SIGKILLed when dropped.
struct OwnRedis {
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (redis-server must be installed)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }

    /// SIGKILL: the server vanishes mid-conversation, with everything it held.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
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
        let transport = rabbit(&vhost, "solo").await;
        let node = Node::start(
            node_options("solo", SHARDS),
            store.clone(),
            services,
            transport.clone(),
        )
        .await
        .expect("node starts");
        let producer = rabbit(&vhost, "producer").await;

        let gold: Vec<Address> = (0..6).map(|i| wallet(100 + i)).collect();
        let plain: Vec<Address> = (0..6).map(|i| wallet(200 + i)).collect();
        let voters: Vec<Address> = gold.iter().chain(&plain).copied().collect();
        let token = |i: usize| 1_000 + i as u64;
        let mut holdings = Holdings::default();
        let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
        let mut block = 0;
        let mut next_block = || {
            block += 1;
            block
        };

        let mut setup: Vec<Outgoing> = (1..=4).map(|p| proposal(&format!("p-{p}"))).collect();
        for (i, user) in gold.iter().enumerate() {
            setup.push(mint_gold(token(i), *user, next_block()));
            holdings.give(token(i), *user);
        }
        producer.publish(setup).await.expect("publish the setup");
        for user in &gold {
            wait_held(&store, *user, &holdings.of(*user)).await;
        }

        // Each phase: every voter votes once on its proposal; half the votes are published,
        // then `between` runs, then the other half.
        let mut expect_phase = |holdings: &Holdings, p: &str| {
            for user in &voters {
                expected.insert((p.to_string(), user.to_string()), holdings.weight(*user));
            }
        };
        let half = voters.len() / 2;
        let votes_of = |p: &str, range: std::ops::Range<usize>| -> Vec<Outgoing> {
            voters[range].iter().map(|u| vote(*u, p)).collect()
        };

        // Phase 1, Redis up: the cache fills.
        expect_phase(&holdings, "p-1");
        producer
            .publish(votes_of("p-1", 0..voters.len()))
            .await
            .expect("publish p-1 votes");
        wait_votes(&store, "p-1", voters.len()).await;
        assert!(cache.stats().redis_up);

        // Phase 2: Redis is SIGKILLed with votes in flight.
        expect_phase(&holdings, "p-2");
        producer
            .publish(votes_of("p-2", 0..half))
            .await
            .expect("publish p-2 votes (first half)");
        server.kill();
        producer
            .publish(votes_of("p-2", half..voters.len()))
            .await
            .expect("publish p-2 votes (second half)");
        let c = cache.clone();
        eventually(10, "the cache marks Redis down", || {
            std::future::ready(!c.stats().redis_up)
        })
        .await;
        wait_votes(&store, "p-2", voters.len()).await;

        // Redis down: two gold NFTs move to plain voters; then phase 3.
        let mut moves = Vec::new();
        for i in 0..2 {
            moves.push(transfer(token(i), gold[i], plain[i], next_block()));
            holdings.take(token(i), gold[i]);
            holdings.give(token(i), plain[i]);
        }
        producer.publish(moves).await.expect("publish transfers");
        for user in gold[..2].iter().chain(&plain[..2]) {
            wait_held(&store, *user, &holdings.of(*user)).await;
        }
        expect_phase(&holdings, "p-3");
        producer
            .publish(votes_of("p-3", 0..voters.len()))
            .await
            .expect("publish p-3 votes");
        wait_votes(&store, "p-3", voters.len()).await;
        assert!(!cache.stats().redis_up, "Redis stayed down through phase 3");

        // Redis comes back, empty, on the same port; one NFT goes home, another moves.
        let clears_before = cache.stats().l1_clears;
        let _server = OwnRedis::start(port);
        eventually(20, "the cache uses Redis again", || {
            std::future::ready(c.stats().redis_up)
        })
        .await;
        assert!(
            cache.stats().l1_clears > clears_before,
            "the resubscription cleared L1"
        );
        let moves = vec![
            transfer(token(0), plain[0], gold[0], next_block()),
            transfer(token(2), gold[2], plain[2], next_block()),
        ];
        holdings.take(token(0), plain[0]);
        holdings.give(token(0), gold[0]);
        holdings.take(token(2), gold[2]);
        holdings.give(token(2), plain[2]);
        producer.publish(moves).await.expect("publish transfers");
        for user in [gold[0], plain[0], gold[2], plain[2]] {
            wait_held(&store, user, &holdings.of(user)).await;
        }
        expect_phase(&holdings, "p-4");
        producer
            .publish(votes_of("p-4", 0..voters.len()))
            .await
            .expect("publish p-4 votes");
        wait_votes(&store, "p-4", voters.len()).await;

        // Every vote counted once, with the weight of its time.
        let mut recorded = BTreeMap::new();
        for p in 1..=4 {
            let p = format!("p-{p}");
            for (voter, weight) in weights(&store, &p).await {
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
        assert_eq!(common::votes_counted(&store).await, n);
        let dead = common::all_dead_letters(transport.as_ref(), &store).await;
        assert!(dead.is_empty(), "dead letters: {dead:?}");

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

        node.shutdown(Duration::from_secs(5)).await;
        drop((transport, producer));
        vhost.delete();
        db.cleanup().await;
    });
}
