//! A message handed to the application, with the handle that settles it.
//!
//! A delivery is settled exactly once: [`Delivery::ack`] after its effect is committed,
//! [`Delivery::requeue`] to have it again later, [`Delivery::dead_letter`] to give up on
//! it. Dropping an unsettled delivery requeues it, so a panicking handler does not leak
//! a prefetch slot. Settling a delivery whose consumer or connection is gone does nothing
//! and returns `Ok`: the broker has already put it back and will deliver it again.

use std::{collections::BTreeMap, fmt};

use bytes::Bytes;
use merit_messages::{ActorKind, Origin};

use crate::{
    deadletter::{DeadLetterReason, Draft},
    error::Result,
    inproc, rabbit,
    routing::{key_header, ShardId},
};

/// One message from a shard queue.
pub struct Delivery {
    /// The shard it came from.
    pub shard: ShardId,
    /// The message body (an encoded envelope, unless a producer misbehaved).
    pub body: Bytes,
    /// The routing key it was published with (the event type).
    pub routing_key: String,
    /// Its headers, as strings.
    pub headers: BTreeMap<String, String>,
    /// The AMQP message id (the envelope id for merit's producers).
    pub message_id: Option<String>,
    /// The AMQP correlation id.
    pub correlation_id: Option<String>,
    /// Whether it was delivered before (and not acked).
    pub redelivered: bool,
    /// How many times it was delivered before (0 the first time); RabbitMQ's
    /// `x-delivery-count`.
    pub delivery_count: u32,
    /// The door it came in through (the exchange it was published to): a type only merit
    /// may publish is applied only when this is [`Origin::Merit`].
    pub origin: Origin,
    pub(crate) settler: Settler,
}

/// The transport-specific handle that acks, requeues or dead-letters one delivery.
pub(crate) enum Settler {
    Rabbit(rabbit::Settler),
    InProcess(inproc::Settler),
}

impl Delivery {
    /// Acknowledges it: its effect is committed and it must not come again.
    pub async fn ack(self) -> Result<()> {
        match self.settler {
            Settler::Rabbit(s) => s.ack().await,
            Settler::InProcess(s) => s.ack(),
        }
    }

    /// Puts it back at the head of its shard, to be delivered again (e.g. on shutdown).
    pub async fn requeue(self) -> Result<()> {
        match self.settler {
            Settler::Rabbit(s) => s.requeue().await,
            Settler::InProcess(s) => s.requeue(),
        }
    }

    /// Gives it back without settling it, for a handover: on RabbitMQ nothing is sent and
    /// the broker returns it, with every other unsettled delivery of its consumer and in
    /// their delivery order, when the consumer's channel closes (a requeue per message
    /// could return them out of order); in process it goes back to the head of its shard.
    pub fn release(self) {
        match self.settler {
            Settler::Rabbit(s) => s.release(),
            Settler::InProcess(s) => drop(s),
        }
    }

    /// Moves it to the dead-letter queue with `reason`: the dead letter is stored (and on
    /// RabbitMQ confirmed) first, and only then is the original acked, so a crash in
    /// between leaves a duplicate dead letter, never a lost message.
    pub async fn dead_letter(self, reason: &DeadLetterReason) -> Result<()> {
        let Delivery {
            body,
            routing_key,
            headers,
            message_id,
            correlation_id,
            settler,
            origin,
            ..
        } = self;
        let draft = |source_queue: String| Draft {
            routing_key,
            body,
            headers,
            message_id,
            correlation_id,
            source_queue,
            origin,
        };
        match settler {
            Settler::Rabbit(s) => {
                let draft = draft(s.queue().to_string());
                s.dead_letter(draft, reason).await
            }
            Settler::InProcess(s) => {
                let draft = draft(s.queue());
                s.dead_letter(draft, reason)
            }
        }
    }

    /// The key of the actor of `kind` this message addresses (its `merit-{kind}` header),
    /// if present and non-empty.
    pub fn routing_key_for(&self, kind: ActorKind) -> Option<&str> {
        self.headers
            .get(key_header(kind))
            .map(String::as_str)
            .filter(|k| !k.is_empty())
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("shard", &self.shard)
            .field("routing_key", &self.routing_key)
            .field("message_id", &self.message_id)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .field("origin", &self.origin)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}
