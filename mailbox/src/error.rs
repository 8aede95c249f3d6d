//! The mailbox's errors. Each variant names the operation, queue or routing key concerned;
//! none carries a password (broker URLs are shown without their credentials).

use std::time::Duration;

/// Result alias for the mailbox.
pub type Result<T> = std::result::Result<T, Error>;

/// What went wrong in a transport.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The first connection to the broker failed (later losses are retried, not reported).
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// The broker URL, without credentials.
        url: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// An AMQP operation failed for a reason other than a lost connection.
    #[error("AMQP {operation} failed: {source}")]
    Amqp {
        /// The operation and its subject, e.g. `declare queue merit.user.3`.
        operation: String,
        /// lapin's error.
        #[source]
        source: lapin::Error,
    },
    /// The broker negatively acknowledged a published message: it was not stored.
    #[error("RabbitMQ refused (nacked) the message with routing key {routing_key:?}")]
    Nacked {
        /// The routing key of the refused message.
        routing_key: String,
    },
    /// The broker stayed unreachable for longer than the operation may wait.
    #[error("RabbitMQ unavailable: gave up on {operation} after {waited:?}")]
    Unavailable {
        /// What was being attempted.
        operation: String,
        /// How long it waited for a connection.
        waited: Duration,
    },
    /// The transport was shut down.
    #[error("the mailbox transport is closed")]
    Closed,
    /// A shard outside the topology was asked for.
    #[error("no shard {shard}: the topology has {shards} shards per actor kind")]
    UnknownShard {
        /// The shard asked for.
        shard: String,
        /// Shards per kind in the topology.
        shards: u16,
    },
    /// An argument cannot be sent over AMQP or makes no sense.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Its value (shortened).
        value: String,
        /// What was expected.
        reason: String,
    },
}

impl Error {
    pub(crate) fn amqp(operation: impl Into<String>, source: lapin::Error) -> Self {
        Self::Amqp {
            operation: operation.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        let value = if value.chars().count() > 80 {
            format!("{}…", value.chars().take(80).collect::<String>())
        } else {
            value.to_string()
        };
        Self::Invalid {
            what,
            value,
            reason: reason.into(),
        }
    }
}
