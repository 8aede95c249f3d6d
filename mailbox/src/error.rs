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
    #[error("RabbitMQ refused to {operation}: {source} -- {fix}")]
    Refused {
        /// What was being attempted.
        operation: String,
        /// What the operator should do.
        fix: &'static str,
        /// lapin's error: the broker's words.
        #[source]
        source: lapin::Error,
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
        /// The error that refused it, if any (its text is in `reason`).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
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

/// `value` cut to 80 characters, for an error.
fn shorten(value: &str) -> String {
    if value.chars().count() > 80 {
        format!("{}…", value.chars().take(80).collect::<String>())
    } else {
        value.to_string()
    }
}

/// AMQP reply code 404: the queue or exchange does not exist.
pub(crate) const NOT_FOUND: u16 = 404;
/// AMQP reply code 406: the object exists with other arguments (or is in use).
pub(crate) const PRECONDITION_FAILED: u16 = 406;

/// The AMQP reply code of the broker's refusal `e` (the code of the channel or connection
/// close the broker sent), or `None` when `e` is not the broker's refusal (a lost
/// connection, a local state error).
pub(crate) fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
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
        fix_for(&source.to_string()).map(|fix| Self::Refused {
            operation,
            fix,
            source: source.clone(),
        })
    }

    /// This error's AMQP reply code, when the broker refused the operation (`404`
    /// NOT_FOUND, `406` PRECONDITION_FAILED, ...).
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            Self::Connect { source, .. }
            | Self::Amqp { source, .. }
            | Self::Refused { source, .. } => reply_code(source),
            _ => None,
        }
    }

    pub(crate) fn amqp(operation: impl Into<String>, source: lapin::Error) -> Self {
        Self::Amqp {
            operation: operation.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            value: shorten(value),
            reason: reason.into(),
            source: None,
        }
    }

    /// As [`Error::invalid`], with the error that refused the value: its text is the
    /// reason, and it is kept as the source.
    pub(crate) fn invalid_from(
        what: &'static str,
        value: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Invalid {
            what,
            value: shorten(value),
            reason: source.to_string(),
            source: Some(Box::new(source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use lapin::protocol::{AMQPError, AMQPErrorKind, AMQPHardError, AMQPSoftError};

    use super::*;

    fn broker_said(kind: AMQPErrorKind, text: &str) -> lapin::Error {
        lapin::ErrorKind::ProtocolError(AMQPError::new(kind, text.into())).into()
    }

    #[test]
    fn a_broker_refusal_is_read_by_its_reply_code() {
        let missing = broker_said(
            AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND),
            "NOT_FOUND - no queue 'q' in vhost '/'",
        );
        assert_eq!(reply_code(&missing), Some(NOT_FOUND));
        let other = broker_said(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg",
        );
        assert_eq!(reply_code(&other), Some(PRECONDITION_FAILED));
        assert_eq!(Error::amqp("read queue q", missing).reply_code(), Some(404));
        // Not the broker's answer: no code, even if the text happens to name one.
        let local: lapin::Error = lapin::ErrorKind::AuthProviderError("NOT_FOUND".into()).into();
        assert_eq!(reply_code(&local), None);
    }

    #[test]
    fn a_refusal_keeps_lapin_s_error_as_its_source() {
        let said = broker_said(
            AMQPErrorKind::Hard(AMQPHardError::COMMANDINVALID),
            "COMMAND_INVALID - unknown exchange type 'x-consistent-hash'",
        );
        let refused = Error::amqp("declare exchange merit", said)
            .refusal()
            .expect("a permanent refusal");
        assert!(matches!(refused, Error::Refused { .. }), "{refused}");
        assert!(
            refused.to_string().contains("x-consistent-hash"),
            "{refused}"
        );
        let source = refused.source().expect("kept");
        assert!(
            source.downcast_ref::<lapin::Error>().is_some(),
            "{source:?}"
        );
        assert_eq!(refused.reply_code(), Some(503));
    }

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
