//! The names of merit's exchanges and queues, derived from a prefix (empty in production;
//! tests use a unique one) and the number of shards per actor kind.
//!
//! ```text
//!                       ┌─ per producer type handled by K ─┐
//! producers ─▶ merit.events (topic) ─────────────────────────▶ merit.K.gate (headers: merit-K present)
//! merit ─────▶ merit.internal (topic) ── per type handled by K ─┘
//!                   │ AE                                        │ match          │ AE (header absent)
//!                   ▼                                           ▼                ▼
//!             merit.unrouted (fanout) ◀──── AE ───── merit.K (x-consistent-hash on merit-K)
//!                   │                                           │ weight 1 each
//!                   ▼                                           ▼
//!             queue merit.unrouted                    queues merit.K.0 … merit.K.{n-1}
//!             (moved to the DLQ with a reason)        (quorum, single active consumer)
//!
//! merit.dlx (fanout) ─▶ queue merit.dlq (quorum)
//! ```
//!
//! Two doors: producers may write only to `merit.events`, from which only the types they
//! may publish ([`merit_messages::Origin::Producer`]) are bound; merit's own events travel
//! on `merit.internal`, which only merit's broker user may write. A merit type published to
//! `merit.events` matches no binding, reaches `merit.unrouted` and is dead-lettered as
//! `forbidden_type`.
//!
//! Why the gate: RabbitMQ 3.10's consistent-hash exchange does not refuse a message that
//! lacks its hash header. It hashes the absent value like any other, so every such message
//! lands in one fixed shard (checked in `tests/broker_facts.rs`). The headers exchange in
//! front matches only messages that carry the kind's key header (a presence match: a
//! binding argument with no value), and its alternate exchange sends the rest to
//! `merit.unrouted`, so a shard queue only ever holds messages with a key.

use merit_messages::{ActorKind, Origin, EVENTS_EXCHANGE, INTERNAL_EXCHANGE};

use crate::routing::ShardId;

/// Names and sizes of merit's broker objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Prepended to every exchange and queue name; `""` in production.
    pub prefix: String,
    /// Shard queues per actor kind (at least 1).
    pub shards: u16,
}

impl Topology {
    /// The production topology: no prefix, `shards` shards per kind.
    pub fn new(shards: u16) -> Self {
        Self {
            prefix: String::new(),
            shards,
        }
    }

    /// The same topology with every name prefixed by `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The topic exchange producers publish to: `{prefix}merit.events`.
    pub fn events_exchange(&self) -> String {
        format!("{}{EVENTS_EXCHANGE}", self.prefix)
    }

    /// merit's own topic exchange: `{prefix}merit.internal`. Every type is routed from it;
    /// only merit's broker user may write to it.
    pub fn internal_exchange(&self) -> String {
        format!("{}{INTERNAL_EXCHANGE}", self.prefix)
    }

    /// The exchange a message through `origin`'s door is published to.
    pub fn exchange_for(&self, origin: Origin) -> String {
        match origin {
            Origin::Producer => self.events_exchange(),
            Origin::Merit => self.internal_exchange(),
        }
    }

    /// The headers exchange that passes only messages carrying kind's key header:
    /// `{prefix}merit.{kind}.gate`.
    pub fn gate_exchange(&self, kind: ActorKind) -> String {
        format!("{}merit.{kind}.gate", self.prefix)
    }

    /// The consistent-hash exchange of `kind`: `{prefix}merit.{kind}`.
    pub fn kind_exchange(&self, kind: ActorKind) -> String {
        format!("{}merit.{kind}", self.prefix)
    }

    /// The queue of one shard: `{prefix}merit.{kind}.{index}`.
    pub fn shard_queue(&self, shard: ShardId) -> String {
        format!("{}merit.{}.{}", self.prefix, shard.kind, shard.index)
    }

    /// Every shard of `kind`.
    pub fn shards_of(&self, kind: ActorKind) -> impl Iterator<Item = ShardId> {
        (0..self.shards).map(move |index| ShardId { kind, index })
    }

    /// Every shard of every kind.
    pub fn all_shards(&self) -> impl Iterator<Item = ShardId> + '_ {
        ActorKind::ALL
            .into_iter()
            .flat_map(|kind| self.shards_of(kind))
    }

    /// The dead-letter exchange: `{prefix}merit.dlx`.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}merit.dlx", self.prefix)
    }

    /// The dead-letter queue: `{prefix}merit.dlq`.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}merit.dlq", self.prefix)
    }

    /// The fanout exchange (the alternate exchange of every routing exchange) and the
    /// queue it feeds share this name: `{prefix}merit.unrouted`.
    pub fn unrouted(&self) -> String {
        format!("{}merit.unrouted", self.prefix)
    }

    /// Every merit queue: shard queues (kind by kind, in index order), then the
    /// dead-letter queue, then the unrouted queue.
    pub fn all_queues(&self) -> Vec<String> {
        self.all_shards()
            .map(|s| self.shard_queue(s))
            .chain([self.dead_letter_queue(), self.unrouted()])
            .collect()
    }

    /// Whether `shard` exists in this topology.
    pub fn contains(&self, shard: ShardId) -> bool {
        shard.index < self.shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new(2).with_prefix("t1.");
        assert_eq!(t.events_exchange(), "t1.merit.events");
        assert_eq!(t.kind_exchange(ActorKind::Nft), "t1.merit.nft");
        assert_eq!(t.gate_exchange(ActorKind::User), "t1.merit.user.gate");
        assert_eq!(
            t.shard_queue(ShardId::new(ActorKind::Proposal, 1)),
            "t1.merit.proposal.1"
        );
        assert_eq!(t.dead_letter_queue(), "t1.merit.dlq");
        assert_eq!(t.unrouted(), "t1.merit.unrouted");
        assert_eq!(t.all_queues().len(), 3 * 2 + 2);
        assert_eq!(Topology::new(1).events_exchange(), "merit.events");
    }
}
