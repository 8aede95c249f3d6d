//! Harness: Redis key prefixes, the producer's messages, and what the store and a node
//! show of them.

use std::{collections::BTreeMap, process::Command, sync::Arc, time::Duration};

use merit_mailbox::{Outgoing, RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope, NftMinted, NftTransferred, VoteChoice};
use merit_storage::{
    entities::{benefit, vote},
    sea_orm::{ColumnTrait, EntityTrait, QueryFilter},
    CacheConfig, Store,
};
use merit_supervisors::Node;
use uuid::Uuid;

use crate::common::{self, cache_config, eventually, Vhost};

pub(crate) const SHARDS: u16 = 2;

/// Weight of a vote without an NFT, and with one gold NFT (+5000 bps in the built-in tiers).
pub(crate) const PLAIN: i64 = 1_000;
pub(crate) const GOLD: i64 = 1_500;

pub(crate) fn init_logs() {
    common::init_test_logs("warn,merit_storage::cache=info");
}

/// A cache whose entries outlive every test: only an invalidation (or a whole-L1 clear)
/// can rid a node of a value it holds.
pub(crate) fn long_lived(node: &str, prefix: &str) -> CacheConfig {
    CacheConfig {
        ttl: Duration::from_secs(600),
        ..cache_config(node, prefix)
    }
}

/// A key prefix of its own on a Redis; its keys are deleted when it is dropped (also when
/// the test fails).
pub(crate) struct RedisPrefix {
    pub(crate) prefix: String,
    pub(crate) url: String,
}

impl RedisPrefix {
    pub(crate) fn new(url: &str) -> Self {
        Self {
            prefix: format!("merit-test-{}:", Uuid::new_v4().simple()),
            url: url.to_string(),
        }
    }

    /// The cached benefits of `user` in L2, as JSON (`None` when not cached).
    pub(crate) fn l2_value(&self, user: Address) -> Option<serde_json::Value> {
        let out = Command::new("redis-cli")
            .args(["-u", &self.url, "--raw", "GET"])
            .arg(format!("{}benefits:{user}", self.prefix))
            .output()
            .expect("redis-cli runs (redis-tools must be installed)");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).ok()
    }

    /// How many NFTs the L2 copy of `user`'s benefits lists.
    pub(crate) fn l2_tokens(&self, user: Address) -> Option<usize> {
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

pub(crate) fn mint_gold(token: u64, to: Address, block: u64) -> Outgoing {
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

pub(crate) fn transfer(token: u64, from: Address, to: Address, block: u64) -> Outgoing {
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

pub(crate) fn vote(voter: Address, proposal: &str) -> Outgoing {
    Outgoing::from_envelope(&common::vote_cast(
        "cache-nodes-test",
        proposal,
        voter,
        VoteChoice::For,
    ))
}

pub(crate) fn proposal(id: &str) -> Outgoing {
    Outgoing::from_envelope(&common::open_proposal(id))
}

/// A transport on `vhost` whose connection is named `name` (so `rabbitmqctl` tells the
/// nodes apart), with the topology declared.
pub(crate) async fn rabbit(vhost: &Vhost, name: &str) -> Arc<RabbitTransport> {
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
pub(crate) fn shard_consumers(vhost: &Vhost) -> (usize, usize) {
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
pub(crate) async fn wait_held(store: &Store, user: Address, tokens: &[u64]) {
    let want: Vec<String> = tokens.iter().map(u64::to_string).collect();
    eventually(30, &format!("benefits of {user} are {want:?}"), || {
        let (store, want) = (store.clone(), want.clone());
        async move { held(&store, user).await.unwrap_or_default() == want }
    })
    .await;
}

/// Every recorded vote on `proposal`: voter → weight.
pub(crate) async fn weights(store: &Store, proposal: &str) -> BTreeMap<String, i64> {
    vote::Entity::find()
        .filter(vote::Column::ProposalId.eq(proposal))
        .all(store.db())
        .await
        .expect("read votes")
        .into_iter()
        .map(|v| (v.voter, v.weight))
        .collect()
}

pub(crate) async fn wait_votes(store: &Store, proposal: &str, n: usize) -> BTreeMap<String, i64> {
    eventually(45, &format!("{n} votes recorded on {proposal}"), || {
        let store = store.clone();
        async move { weights(&store, proposal).await.len() >= n }
    })
    .await;
    weights(store, proposal).await
}

pub(crate) fn applied(node: &Node, kind: &str) -> u64 {
    node.status()
        .registries
        .iter()
        .filter(|r| kind == "any" || r.kind == kind)
        .map(|r| r.applied)
        .sum()
}
