//! merit's mailboxes: the transports that carry event envelopes to actor shards.
//!
//! Owns: the broker topology (a topic exchange `merit.events`, a consistent-hash exchange
//! and N quorum shard queues per actor kind, the dead-letter queue and the unrouted
//! queue), publishing with publisher confirms, consuming shards with manual acks,
//! recovery from lost connections, and dead letters (peek, replay, discard). Two
//! implementations of one [`Transport`] trait: [`RabbitTransport`] and
//! [`InProcessTransport`].
//!
//! Guarantees: every message for one actor key lands in one shard, in publish order, and
//! each shard has one active consumer at a time; `publish` returns only after the broker
//! confirmed every message; delivery is at least once (redeliveries are flagged and
//! counted); nothing is dropped silently — a message no mailbox can take becomes a dead
//! letter with a reason; acking a delivery from before a reconnect is a harmless no-op.
//!
//! Must not know: actors, handlers, storage or the inbox. It moves opaque bodies with
//! string headers; decoding envelopes and deciding when to ack belongs to the layers
//! above.

mod deadletter;
mod delivery;
mod error;
mod inproc;
mod outgoing;
mod rabbit;
mod routing;
mod topology;
mod transport;

pub use deadletter::{DeadLetter, DeadLetterDelivery, DeadLetterReason, MAX_DEAD_LETTER_BODY};
pub use delivery::Delivery;
pub use error::{Error, Result};
pub use inproc::InProcessTransport;
pub use outgoing::Outgoing;
pub use rabbit::{BrokerAddresses, RabbitOptions, RabbitTransport, ShardQueue};
pub use routing::{forbidden, key_header, shard_for, ShardId};
pub use topology::Topology;
pub use transport::Transport;
