//! A benefits change committed on node A reaches a vote weighed on node B through Redis
//! pub/sub, and (the control) does not without Redis.

use std::{sync::Arc, time::Duration};

use merit_actors::Services;
use merit_config::ConfigHandle;
use merit_mailbox::{RabbitTransport, Transport};
use merit_messages::Address;
use merit_storage::{CacheStats, Store, TieredCache};
use merit_supervisors::Node;

use crate::{
    common::{eventually, node_options, redis_url, run_in_system, wallet, Backend, TestDb, Vhost},
    harness::{
        applied, init_logs, long_lived, mint_gold, proposal, rabbit, shard_consumers, transfer,
        vote, wait_held, wait_votes, RedisPrefix, GOLD, PLAIN, SHARDS,
    },
};

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
pub(crate) async fn start_node(
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
