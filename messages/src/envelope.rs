//! The event envelope: what every producer publishes to `merit.events` and every actor
//! receives. Decoding is strict and total: any input either becomes a validated
//! [`Envelope`] or a [`DecodeError`] naming the field and the reason — never a panic and
//! never a partially-read event.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{value::RawValue, Value};
use uuid::Uuid;

use crate::{
    error::{DecodeError, DecodeErrorKind, Result},
    events::{Event, EventType},
    ids::{short, Address, EventId, ProposalId, TokenId},
};

/// Largest accepted envelope, in bytes of JSON.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Longest accepted `source`.
pub const MAX_SOURCE_LEN: usize = 128;

/// The keys that address the actors an event concerns. Derived from the payload; a
/// producer may send them (they are then checked) or leave them out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActorKeys {
    /// The user (wallet) concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Address>,
    /// The proposal concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<ProposalId>,
    /// The token concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft: Option<TokenId>,
}

impl ActorKeys {
    /// The key for actor `kind`, as the string used for routing and storage.
    pub fn key_for(&self, kind: crate::ActorKind) -> Option<String> {
        match kind {
            crate::ActorKind::User => self.user.map(|a| a.to_string()),
            crate::ActorKind::Proposal => self.proposal.as_ref().map(|p| p.to_string()),
            crate::ActorKind::Nft => self.nft.as_ref().map(|t| t.to_string()),
        }
    }
}

/// A validated event with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique, stable id: the idempotency key.
    pub id: EventId,
    /// Schema version of the payload.
    pub version: u32,
    /// Who produced it (`api`, `chain:31337`, `user-actor`, a producer's name), 1-128 chars.
    pub source: String,
    /// When it happened, per the producer.
    pub occurred_at: DateTime<Utc>,
    /// Groups all events caused by one original request; equals `id` for an original.
    pub correlation_id: Uuid,
    /// The event that directly caused this one, if any.
    pub causation_id: Option<EventId>,
    /// The actors it addresses (always equal to `event.keys()`).
    pub keys: ActorKeys,
    /// The typed payload.
    pub event: Event,
}

/// The wire form, generic over the payload so that one definition serves decoding
/// (`Value`), encoding (`&Event`) and the JSON Schema (each payload type).
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Wire<P> {
    /// Unique event id (UUID). Redeliveries and retries must reuse it.
    pub(crate) id: EventId,
    /// Event type, equal to the AMQP routing key.
    #[serde(rename = "type")]
    pub(crate) event_type: String,
    /// Payload schema version.
    pub(crate) version: u32,
    /// Producer name, 1-128 characters.
    pub(crate) source: String,
    /// RFC 3339 timestamp.
    pub(crate) occurred_at: DateTime<Utc>,
    /// Correlation id (UUID); defaults to `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) correlation_id: Option<Uuid>,
    /// Id of the causing event, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) causation_id: Option<EventId>,
    /// Optional; when present must equal the keys derived from the payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keys: Option<ActorKeys>,
    /// The event's payload, per `type` and `version`.
    pub(crate) payload: P,
}

impl Envelope {
    /// A new original event (its own correlation id) from `source`, happening now.
    pub fn new(source: impl Into<String>, event: impl Into<Event>) -> Self {
        let id = EventId::new_random();
        Self::with_id(id, source, Utc::now(), event)
    }

    /// A new original event with a chosen id and time (chain events, tests).
    pub fn with_id(
        id: EventId,
        source: impl Into<String>,
        occurred_at: DateTime<Utc>,
        event: impl Into<Event>,
    ) -> Self {
        let event = event.into();
        Self {
            id,
            version: 1,
            source: source.into(),
            occurred_at,
            correlation_id: id.0,
            causation_id: None,
            keys: event.keys(),
            event,
        }
    }

    /// An event emitted while handling `self`: same correlation, caused by `self`, with a
    /// deterministic id so that handling a redelivery of `self` emits the same ids.
    ///
    /// The id depends on who may publish `self`'s type ([`EventType::origin`]): a
    /// producer's event and one of merit's own that share an id (a producer may choose any
    /// id, including one merit derived) never derive the same ids.
    pub fn caused(&self, label: &str, source: impl Into<String>, event: impl Into<Event>) -> Self {
        let event = event.into();
        let id = match self.event_type().origin() {
            crate::Origin::Producer => EventId::derived(self.id, label),
            crate::Origin::Merit => EventId::derived(self.id, &format!("merit:{label}")),
        };
        Self {
            id,
            version: 1,
            source: source.into(),
            occurred_at: Utc::now(),
            correlation_id: self.correlation_id,
            causation_id: Some(self.id),
            keys: event.keys(),
            event,
        }
    }

    /// The routing headers a publisher sets: one `(header, key)` per actor kind this
    /// event addresses (`merit-user: 0xab…`).
    pub fn routing_headers(&self) -> Vec<(&'static str, String)> {
        crate::ActorKind::ALL
            .iter()
            .filter_map(|k| self.keys.key_for(*k).map(|key| (k.header(), key)))
            .collect()
    }

    /// The event type (routing key).
    pub fn event_type(&self) -> EventType {
        self.event.event_type()
    }

    /// Encodes to the wire JSON. Infallible for a validated envelope.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            id: self.id,
            event_type: self.event_type().as_str().to_string(),
            version: self.version,
            source: self.source.clone(),
            occurred_at: self.occurred_at,
            correlation_id: Some(self.correlation_id),
            causation_id: self.causation_id,
            keys: Some(self.keys.clone()),
            payload: &self.event,
        };
        serde_json::to_vec(&wire).expect("an envelope of plain data always serialises")
    }

    /// Decodes and validates wire JSON.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::new(
                DecodeErrorKind::Oversized,
                "$",
                format!(
                    "{} bytes: at most {MAX_ENVELOPE_BYTES} allowed",
                    bytes.len()
                ),
            ));
        }
        // An envelope is a JSON object: serde would also read a struct from a positional
        // array, which no producer may rely on (the schema says object).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(DecodeError::new(
                DecodeErrorKind::Malformed,
                "$",
                "expected a JSON object (the envelope)",
            ));
        }
        // One pass: the payload is kept as a borrowed slice of `bytes` (checked to be valid
        // JSON) until `type` and `version` say what it is, then read straight into its
        // type. No intermediate `Value` tree is built.
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let wire: Wire<&RawValue> =
            serde_path_to_error::deserialize(crate::strict::Strict(&mut de))
                .map_err(from_path_error)?;
        de.end().map_err(|e| {
            DecodeError::new(
                DecodeErrorKind::Malformed,
                "$",
                format!("trailing data after the envelope: {e}"),
            )
            .with_source(e)
        })?;
        Self::from_wire(wire)
    }

    fn from_wire(wire: Wire<&RawValue>) -> Result<Self> {
        let event_type: EventType = wire.event_type.parse()?;
        if wire.source.is_empty() || wire.source.chars().count() > MAX_SOURCE_LEN {
            return Err(DecodeError::invalid(
                "source",
                format!(
                    "{}: expected 1..={MAX_SOURCE_LEN} characters",
                    short(&wire.source)
                ),
            ));
        }
        crate::events::check_no_controls("source", &wire.source, false)?;
        if !wire.payload.get().starts_with('{') {
            return Err(DecodeError::new(
                DecodeErrorKind::Malformed,
                "payload",
                "expected a JSON object",
            ));
        }
        let event = Event::decode(event_type, wire.version, wire.payload).map_err(|e| {
            if e.kind == DecodeErrorKind::UnknownVersion {
                e
            } else {
                e.within("payload")
            }
        })?;
        let keys = event.keys();
        if let Some(given) = wire.keys {
            if given != keys {
                return Err(DecodeError::new(
                    DecodeErrorKind::KeyMismatch,
                    "keys",
                    format!(
                        "{} disagrees with the payload, which addresses {}",
                        serde_json::to_string(&given).unwrap_or_default(),
                        serde_json::to_string(&keys).unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(Self {
            id: wire.id,
            version: wire.version,
            source: wire.source,
            occurred_at: wire.occurred_at,
            correlation_id: wire.correlation_id.unwrap_or(wire.id.0),
            causation_id: wire.causation_id,
            keys,
            event,
        })
    }
}

/// Deserialises a JSON document (a payload's raw text) into `T`, naming the failing field.
///
/// Read straight from the text when it is valid. When it is not, it is read again as a
/// `Value` tree, only to report the error the way it always was: from text, serde_json
/// reports some type errors as syntax (`42` for an enum is "expected value"), which would
/// move a dead letter from `invalid_field` to `malformed`.
pub(crate) fn decode_value<T: DeserializeOwned>(raw: &RawValue) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    if let Ok(value) = T::deserialize(crate::strict::Strict(&mut de)) {
        return Ok(value);
    }
    let tree: Value = serde_json::from_str(raw.get()).map_err(|e| {
        DecodeError::new(DecodeErrorKind::Malformed, "$", e.to_string()).with_source(e)
    })?;
    serde_path_to_error::deserialize(crate::strict::Strict(tree)).map_err(from_path_error)
}

fn from_path_error(e: serde_path_to_error::Error<serde_json::Error>) -> DecodeError {
    let mut err = crate::error::json_error(e);
    if err.reason.starts_with("unknown field") {
        err.reason.push_str(" (a new field needs a new version)");
    }
    err
}
