//! A node whose Redis is SIGKILLed and restarted mid-run still weighs every vote by the
//! holdings of its time, with nothing dead-lettered.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use merit_actors::Services;
use merit_config::ConfigHandle;
use merit_mailbox::{Outgoing, RabbitTransport, Transport};
use merit_messages::Address;
use merit_storage::{Store, TieredCache};
use uuid::Uuid;

use crate::{
    common::{
        self, eventually, free_port, run_in_system, wallet, Backend, OwnRedis, TestDb, Vhost,
    },
    cross_node::start_node,
    harness::{
        init_logs, long_lived, mint_gold, proposal, rabbit, transfer, vote, wait_held, wait_votes,
        weights, GOLD, PLAIN,
    },
};

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
