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
    /// No address of a broker list took a connection.
    #[error("cannot connect to any RabbitMQ address: {failures}")]
    NoBroker {
        /// Each address (without credentials) and why it failed.
        failures: String,
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
    /// The broker refused for a reason no retry cures (credentials, permissions, a missing
    /// vhost or plugin); `fix` says what to do.
    #[error("RabbitMQ refused to {operation}: {reason} -- {fix}")]
    Refused {
        /// What was being attempted.
        operation: String,
        /// The broker's words.
        reason: String,
        /// What the operator should do.
        fix: &'static str,
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

/// What to do about a broker answer no retry cures, or `None` for one that may pass (a lost
/// connection, a broker restarting). Read from lapin's text of the broker's reply code and
/// message, which is the broker's own wording.
pub(crate) fn fix_for(broker_said: &str) -> Option<&'static str> {
    let s = broker_said;
    if s.contains("unknown exchange type") && s.contains("x-consistent-hash") {
        Some(
            "enable the plugin on every broker node: \
             `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange`",
        )
    } else if s.contains("ACCESS_REFUSED") && s.contains("Login was refused") {
        Some("check the user name and password in MERIT_AMQP_URL (`rabbitmqctl authenticate_user USER PASSWORD`)")
    } else if s.contains("NOT_ALLOWED") && s.contains("vhost") && s.contains("not found") {
        Some("create the vhost (`rabbitmqctl add_vhost VHOST`) or fix the path of MERIT_AMQP_URL")
    } else if s.contains("access to vhost") && s.contains("refused") {
        Some(
            "give merit's user permissions on the vhost: \
             `rabbitmqctl set_permissions -p VHOST USER '.*' '.*' '.*'`",
        )
    } else if s.contains("NOT_IMPLEMENTED") {
        Some("this RabbitMQ does not support the operation (see the broker's words above)")
    } else if s.contains("ACCESS_REFUSED") {
        Some(
            "merit's user needs configure, write and read permissions on the vhost: \
             `rabbitmqctl set_permissions -p VHOST USER '.*' '.*' '.*'`",
        )
    } else {
        None
    }
}

impl Error {
    /// This error as [`Error::Refused`] when the broker's answer is one no retry cures.
    pub(crate) fn refusal(&self) -> Option<Self> {
        let (operation, source) = match self {
            Self::Amqp { operation, source } => (operation.clone(), source),
            Self::Connect { url, source } => (format!("connect to {url}"), source),
            _ => return None,
        };
        let reason = source.to_string();
        fix_for(&reason).map(|fix| Self::Refused {
            operation,
            reason,
            fix,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::fix_for;

    #[test]
    fn a_missing_plugin_names_the_command_that_enables_it() {
        // RabbitMQ's words when `x-consistent-hash` is declared without the plugin.
        let said = "protocol error: AMQP hard error: COMMAND_INVALID - \
                    unknown exchange type 'x-consistent-hash'";
        let fix = fix_for(said).expect("a permanent refusal");
        assert!(fix.contains("rabbitmq-plugins enable rabbitmq_consistent_hash_exchange"));
    }

    #[test]
    fn passing_troubles_have_no_fix() {
        for said in [
            "IO error: Connection refused (os error 111)",
            "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'",
            "invalid connection state: Closed",
        ] {
            assert_eq!(fix_for(said), None, "{said}");
        }
    }
}
