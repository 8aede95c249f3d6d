//! The one interface both transports implement; the actor and supervisor layers see only
//! this.

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use crate::{
    deadletter::{DeadLetter, DeadLetterDelivery},
    delivery::Delivery,
    error::Result,
    outgoing::Outgoing,
    routing::ShardId,
};

/// A mailbox transport: publishes with confirms, consumes shard queues with manual acks
/// and keeps dead letters.
///
/// Guarantees, for both implementations:
/// - a message reaches every shard of every kind that handles its type, chosen by its key,
///   so all messages for one key go to one shard, in publish order;
/// - a message is never dropped unnoticed: one that no mailbox can take (unknown type,
///   missing key header) becomes a dead letter with the reason;
/// - delivery is at least once: a delivery not acked (consumer gone, connection lost,
///   [`Delivery::requeue`]) comes again, marked redelivered, so handlers must be
///   idempotent (the inbox makes them so).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Creates every exchange, queue and binding of the topology; idempotent.
    async fn declare(&self) -> Result<()>;

    /// Publishes `batch` in order and returns once the broker has confirmed every message
    /// (confirms are awaited together, not one round trip each). `Err` if any message was
    /// refused, or if the broker stayed unreachable longer than the publish timeout; a
    /// message may then have been stored anyway, so a retry may duplicate it.
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<()>;

    /// Starts consuming `shard` with at most `prefetch` unacked deliveries. The stream
    /// ends (`None`) when the consumer is cancelled (queue deleted) or the transport is
    /// closed; the caller may call `consume` again. Only one consumer per shard is active
    /// at a time (others wait and take over).
    async fn consume(&self, shard: ShardId, prefetch: u16) -> Result<mpsc::Receiver<Delivery>>;

    /// Every merit queue with its count of ready (not in-flight) messages.
    async fn queue_depths(&self) -> Result<Vec<(String, u64)>>;

    /// Up to `limit` dead letters still in the dead-letter queue (not yet taken by a
    /// recorder), oldest first, without removing them.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// Streams the dead-letter queue, at most `prefetch` unacked at a time: what a
    /// recorder stores and then acks. A dead letter taken but not acked (the recorder
    /// stopped) comes again, so recording must be idempotent by id. Replaying one is a
    /// [`publish`](Self::publish) of [`DeadLetter::replay_message`].
    async fn consume_dead_letters(
        &self,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<DeadLetterDelivery>>;

    /// Whether the transport can publish and consume right now (readiness).
    async fn is_connected(&self) -> bool;

    /// Runs the transport's background duty until `shutdown` resolves: for RabbitMQ,
    /// moving what reached `merit.unrouted` to the dead-letter queue with its reason. The
    /// in-process transport dead-letters unroutables on publish and has nothing to do.
    async fn run_unrouted_mover(&self, shutdown: BoxFuture<'static, ()>) -> Result<()> {
        shutdown.await;
        Ok(())
    }
}
