//! A message on its way to `merit.events`: what a producer, the outbox relay or a DLQ
//! replay hands to [`crate::Transport::publish`].

use std::collections::BTreeMap;

use bytes::Bytes;
use merit_messages::{ActorKind, Envelope, Origin};

use crate::routing::key_header;

/// One message to publish. Published persistent, as `application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The event type (topic routing key).
    pub routing_key: String,
    /// The encoded envelope.
    pub body: Bytes,
    /// AMQP message id: the envelope id, so a duplicate is recognisable on the wire.
    pub message_id: String,
    /// AMQP correlation id: the envelope's correlation id.
    pub correlation_id: Option<String>,
    /// String headers; the key headers (`merit-user`, …) choose the shard.
    pub headers: BTreeMap<String, String>,
    /// The door it goes through: [`Origin::Producer`] publishes to `merit.events`,
    /// [`Origin::Merit`] to merit's internal exchange.
    pub origin: Origin,
}

impl Outgoing {
    /// A message with no headers or correlation id (tests, foreign producers).
    pub fn new(
        routing_key: impl Into<String>,
        message_id: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        Self {
            routing_key: routing_key.into(),
            body: body.into(),
            message_id: message_id.into(),
            correlation_id: None,
            headers: BTreeMap::new(),
            origin: Origin::Producer,
        }
    }

    /// The message for `env`: routing key = its type, message id = its id, and one key
    /// header per key the envelope carries (`merit-user` = lowercase 0x address,
    /// `merit-proposal` = proposal id, `merit-nft` = token id). It goes through the door
    /// of its type ([`merit_messages::EventType::origin`]): merit publishes its own types
    /// on its internal exchange, producer types on `merit.events`.
    pub fn from_envelope(env: &Envelope) -> Self {
        let headers = ActorKind::ALL
            .into_iter()
            .filter_map(|kind| {
                env.keys
                    .key_for(kind)
                    .map(|key| (key_header(kind).to_string(), key))
            })
            .collect();
        Self {
            routing_key: env.event_type().as_str().to_string(),
            body: Bytes::from(env.to_json()),
            message_id: env.id.to_string(),
            correlation_id: Some(env.correlation_id.to_string()),
            headers,
            origin: env.event_type().origin(),
        }
    }

    /// The same message through `origin`'s door.
    pub fn through(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Adds or replaces a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use merit_messages::{Address, VoteCast, VoteChoice};

    use super::*;

    #[test]
    fn from_envelope_sets_type_id_and_one_header_per_key() {
        let voter: Address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
            .parse()
            .expect("valid address");
        let env = Envelope::new(
            "test",
            VoteCast {
                proposal: "prop-1".parse().expect("valid id"),
                voter,
                choice: VoteChoice::Against,
                reason: None,
            },
        );
        let out = Outgoing::from_envelope(&env);
        assert_eq!(out.routing_key, "governance.vote.cast");
        assert_eq!(out.message_id, env.id.to_string());
        assert_eq!(out.correlation_id, Some(env.correlation_id.to_string()));
        assert_eq!(
            out.headers,
            BTreeMap::from([
                ("merit-proposal".to_string(), "prop-1".to_string()),
                (
                    "merit-user".to_string(),
                    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".to_string()
                ),
            ])
        );
        assert_eq!(Envelope::decode(&out.body).expect("decodes"), env);
    }
}
