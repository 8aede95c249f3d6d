//! Which node consumes which shard: rendezvous hashing over the live nodes.
//!
//! Every node reads the same membership (the nodes registered with a live heartbeat) and
//! computes the same assignment from it; no coordinator, no vote. Each (node, shard) pair
//! has a score `hash(node id, shard)`; per kind, the pairs are taken best score first and a
//! shard goes to its node unless that node already has its quota. With N live nodes and S
//! shards per kind, every node owns ⌊S/N⌋ or ⌈S/N⌉ of each kind's shards (within one), and
//! a shard stays with its best-scoring node whenever quotas allow, so a join or a leave
//! moves few shards beyond the ones the joining or leaving node takes or gives.
//!
//! Ownership is a liveness rule, not the safety rule. The shard queues have a single
//! active consumer, so while two nodes briefly both believe they own a shard (one has
//! seen a join the other has not yet read) the second one waits as a standby; and a
//! giving node hands a shard over only after its in-flight turns are committed and acked
//! (see [`crate::shard`]), so per-key order and exactly-once hold across a move. While
//! no node believes it owns a shard (a node left and the others have not read it yet),
//! the shard's messages wait in their queue.
//!
//! A node that cannot read the membership keeps its last view; before its first read it
//! owns every shard (each waits as a standby where another node is active), which is how
//! a single node, or a cluster without a membership source, runs.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use async_trait::async_trait;
use merit_mailbox::ShardId;
use merit_messages::ActorKind;
use tokio::sync::watch;

/// Where a node learns the ids of the live nodes.
#[async_trait]
pub trait Membership: Send + Sync + 'static {
    /// The ids of the nodes alive now (this node's own id may be missing: it is added).
    async fn live_nodes(&self) -> Result<Vec<String>, String>;
}

/// The shards one node owns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Owned {
    /// Every shard, when the node has no membership view (alone, or not read yet).
    pub all: bool,
    /// The owned shards, when `all` is false.
    pub shards: BTreeSet<ShardId>,
    /// The live nodes the assignment was computed from (sorted; empty when `all`).
    pub nodes: Vec<String>,
}

impl Owned {
    /// Ownership of every shard.
    pub fn everything() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }

    /// Whether `shard` is owned.
    pub fn contains(&self, shard: ShardId) -> bool {
        self.all || self.shards.contains(&shard)
    }
}

/// The score of `node` for `shard`: a stable 64-bit hash (FNV-1a, then a SplitMix64
/// finaliser so that similar ids spread), the same on every node and every build.
fn score(node: &str, shard: ShardId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    feed(node.as_bytes());
    feed(&[0xff]);
    feed(shard.kind.as_str().as_bytes());
    feed(&shard.index.to_be_bytes());
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Assigns each kind's `shards` shards to `nodes` (sorted, distinct): the owner's index
/// in `nodes` per shard, in [`ActorKind::ALL`] order then by index. Deterministic.
fn assignment(nodes: &[String], shards: u16) -> Vec<(ShardId, usize)> {
    let n = nodes.len();
    if n == 0 {
        return Vec::new();
    }
    let per = usize::from(shards);
    let (floor, extras) = (per / n, per % n);
    let mut out = Vec::with_capacity(per * ActorKind::ALL.len());
    for kind in ActorKind::ALL {
        let mut pairs: Vec<(u64, usize, u16)> = (0..shards)
            .flat_map(|index| {
                let shard = ShardId { kind, index };
                (0..n).map(move |i| (score(&nodes[i], shard), i, index))
            })
            .collect();
        // Best score first; ties (equal 64-bit hashes) by node order, then shard.
        pairs.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut owner: Vec<Option<usize>> = vec![None; per];
        let mut held = vec![0usize; n];
        let mut extras_left = extras;
        for (_, node, index) in pairs {
            let slot = &mut owner[usize::from(index)];
            if slot.is_some() {
                continue;
            }
            if held[node] < floor {
                held[node] += 1;
                *slot = Some(node);
            } else if held[node] == floor && extras_left > 0 {
                held[node] += 1;
                extras_left -= 1;
                *slot = Some(node);
            }
        }
        for (index, node) in owner.into_iter().enumerate() {
            // Every shard finds a node: the quotas add up to exactly `shards`.
            let node = node.unwrap_or(0);
            out.push((
                ShardId {
                    kind,
                    index: index as u16,
                },
                node,
            ));
        }
    }
    out
}

/// The owner of `shard` among `nodes` with `shards` shards per kind (for tests: a node
/// asks [`assign`] for its own share). `None` when `nodes` is empty or `shard` is out of
/// range.
#[cfg(test)]
fn owner(shard: ShardId, nodes: &[String], shards: u16) -> Option<String> {
    let mut nodes: Vec<String> = nodes.to_vec();
    nodes.sort();
    nodes.dedup();
    assignment(&nodes, shards)
        .into_iter()
        .find(|(s, _)| *s == shard)
        .map(|(_, i)| nodes[i].clone())
}

/// The shards `me` owns among `nodes` (`me` is added when missing), `shards` per kind.
pub fn assign(me: &str, nodes: &[String], shards: u16) -> Owned {
    let mut nodes: Vec<String> = nodes.to_vec();
    if !nodes.iter().any(|n| n == me) {
        nodes.push(me.to_string());
    }
    nodes.sort();
    nodes.dedup();
    let shards = assignment(&nodes, shards)
        .into_iter()
        .filter(|(_, i)| nodes[*i] == me)
        .map(|(shard, _)| shard)
        .collect();
    Owned {
        all: false,
        shards,
        nodes,
    }
}

/// Sets `merit_shards_owned{kind}` from `owned`.
pub(crate) fn record(owned: &Owned, shards: u16) {
    for kind in ActorKind::ALL {
        let n = (0..shards)
            .filter(|&index| owned.contains(ShardId { kind, index }))
            .count();
        metrics::gauge!("merit_shards_owned", "kind" => kind.as_str()).set(n as f64);
    }
}

/// Reads the membership every `interval` and publishes this node's shards on `owned`
/// whenever they change, until `shutdown`.
pub(crate) async fn run_ownership(
    membership: Arc<dyn Membership>,
    me: String,
    shards: u16,
    interval: Duration,
    owned: watch::Sender<Owned>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        match membership.live_nodes().await {
            Ok(nodes) => {
                if failing {
                    tracing::info!("node membership readable again");
                    failing = false;
                }
                let next = assign(&me, &nodes, shards);
                record(&next, shards);
                owned.send_if_modified(|current| {
                    if *current == next {
                        return false;
                    }
                    let before = if current.all {
                        "all".to_string()
                    } else {
                        current.shards.len().to_string()
                    };
                    tracing::info!(
                        nodes = ?next.nodes,
                        owned = next.shards.len(),
                        before = %before,
                        "shard ownership changed"
                    );
                    *current = next;
                    true
                });
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read node membership; keeping the last shard assignment");
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    fn per_kind(me: &str, nodes: &[String], shards: u16, kind: ActorKind) -> usize {
        assign(me, nodes, shards)
            .shards
            .iter()
            .filter(|s| s.kind == kind)
            .count()
    }

    #[test]
    fn every_shard_has_exactly_one_owner_and_each_node_a_share_within_one() {
        for shards in [1u16, 4, 16, 17] {
            for n in 1..=5 {
                let nodes = ids(n);
                for kind in ActorKind::ALL {
                    let counts: Vec<usize> = nodes
                        .iter()
                        .map(|m| per_kind(m, &nodes, shards, kind))
                        .collect();
                    assert_eq!(counts.iter().sum::<usize>(), usize::from(shards));
                    let lo = counts.iter().min().copied().unwrap_or_default();
                    let hi = counts.iter().max().copied().unwrap_or_default();
                    assert!(hi - lo <= 1, "{shards} over {n}: {counts:?}");
                }
                for node in &nodes {
                    for shard in assign(node, &nodes, shards).shards {
                        assert_eq!(owner(shard, &nodes, shards).as_deref(), Some(node.as_str()));
                    }
                }
            }
        }
    }

    #[test]
    fn the_assignment_does_not_depend_on_the_order_nodes_are_listed() {
        let mut nodes = ids(4);
        let a = assign("node-2", &nodes, 16);
        nodes.reverse();
        assert_eq!(assign("node-2", &nodes, 16), a);
    }

    #[test]
    fn a_join_moves_few_shards_besides_those_the_new_node_takes() {
        let (before, after) = (ids(3), ids(4));
        for kind in ActorKind::ALL {
            let mut taken = 0;
            let mut reshuffled = 0;
            for index in 0..16 {
                let shard = ShardId { kind, index };
                let (was, is) = (owner(shard, &before, 16), owner(shard, &after, 16));
                if is.as_deref() == Some("node-3") {
                    taken += 1;
                } else if was != is {
                    reshuffled += 1;
                }
            }
            assert_eq!(taken, 4, "{kind}: the new node takes its share");
            assert!(
                reshuffled <= 4,
                "{kind}: {reshuffled} shards moved between old nodes"
            );
        }
    }

    #[test]
    fn a_node_missing_from_the_list_still_counts_itself() {
        let view = assign("node-9", &ids(2), 4);
        assert_eq!(view.nodes.len(), 3);
        assert!(view.nodes.contains(&"node-9".to_string()));
        assert!(!view.all);
        assert!(Owned::everything().contains(ShardId {
            kind: ActorKind::User,
            index: 3
        }));
    }
}
