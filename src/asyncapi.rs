//! merit's AsyncAPI 3.0 document (`merit schema --asyncapi`, committed as
//! `docs/asyncapi.json`): the channels producers publish to, the dead-letter queue, the
//! notification fan-out between nodes and the `/ws` frames. It is generated from the same
//! types the runtime uses (event types, their doors and actor keys, the dead-letter reason
//! classes, the WebSocket frames), and a test fails if the committed file drifts.
//! Payloads reference the per-event JSON Schemas in `docs/schemas/` (draft 2020-12).

use merit_api::NOTIFY_EXCHANGE;
use merit_mailbox::DeadLetterReason;
use merit_messages::{
    ActorKind, DecodeErrorKind, EventType, Origin, EVENTS_EXCHANGE, INTERNAL_EXCHANGE,
};
use serde_json::{json, Map, Value};

/// The dead-letter reason classes: decoding's, the shard consumer's, the broker's.
fn reason_classes() -> Vec<&'static str> {
    let mut classes: Vec<&'static str> = [
        DecodeErrorKind::Oversized,
        DecodeErrorKind::Malformed,
        DecodeErrorKind::UnknownType,
        DecodeErrorKind::UnknownVersion,
        DecodeErrorKind::InvalidField,
        DecodeErrorKind::MissingField,
        DecodeErrorKind::KeyMismatch,
    ]
    .into_iter()
    .map(DecodeErrorKind::as_str)
    .collect();
    for class in [
        DeadLetterReason::MISSING_KEY,
        DeadLetterReason::TYPE_MISMATCH,
        DeadLetterReason::FORBIDDEN_TYPE,
        DeadLetterReason::UNROUTED,
        DeadLetterReason::HANDLER_ERROR,
        "delivery_limit",
    ] {
        if !classes.contains(&class) {
            classes.push(class);
        }
    }
    classes
}

/// A component name for an event type: `governance.vote.cast` → `governanceVoteCast`.
fn component_name(event_type: EventType) -> String {
    let mut name = String::new();
    let mut upper = false;
    for c in event_type.as_str().chars() {
        if c == '.' || c == '_' {
            upper = true;
        } else if upper {
            name.extend(c.to_uppercase());
            upper = false;
        } else {
            name.push(c);
        }
    }
    name
}

/// The AMQP headers a producer sets for `event_type`: one key header per actor kind that
/// handles it.
fn key_headers(event_type: EventType) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for kind in event_type.handlers() {
        let what = match kind {
            ActorKind::User => "the user's lowercase 0x address",
            ActorKind::Proposal => "the proposal id",
            ActorKind::Nft => "the token id (uint256 as a decimal string)",
        };
        properties.insert(
            kind.header().to_string(),
            json!({
                "type": "string",
                "minLength": 1,
                "description": format!(
                    "{what}, equal to the payload's; RabbitMQ hashes it to pick the {} shard \
                     queue (missing: dead-lettered as missing_key; different: key_mismatch)",
                    kind.as_str()
                ),
            }),
        );
        required.push(kind.header());
    }
    properties.insert(
        "traceparent".to_string(),
        json!({
            "type": "string",
            "maxLength": 512,
            "description": "Optional W3C trace context (00-<trace id>-<span id>-<flags>): with \
                tracing on (MERIT_OTEL_ENDPOINT), merit's spans for this event join the \
                producer's trace; `tracestate` may accompany it",
        }),
    );
    json!({ "type": "object", "properties": properties, "required": required })
}

/// The AMQP binding of a channel on the durable exchange `name` of type `kind`.
fn exchange_binding(name: &str, kind: &str) -> Value {
    json!({
        "amqp": {
            "is": "routingKey",
            "exchange": { "name": name, "type": kind, "durable": true, "autoDelete": false, "vhost": "/" },
            "bindingVersion": "0.3.0"
        }
    })
}

/// The document's channels, operations and messages, filled section by section (each
/// map keeps its entries in the order they are added).
#[derive(Default)]
struct Sections {
    channels: Map<String, Value>,
    operations: Map<String, Value>,
    messages: Map<String, Value>,
}

impl Sections {
    /// An event type's message and channel, and a publish operation for a producer's.
    fn event(&mut self, event_type: EventType) {
        let Self {
            channels,
            operations,
            messages,
        } = self;
        let name = component_name(event_type);
        let door = match event_type.origin() {
            Origin::Producer => EVENTS_EXCHANGE,
            Origin::Merit => INTERNAL_EXCHANGE,
        };
        let who = match event_type.origin() {
            Origin::Producer => "Producers publish it to merit.events (their broker user may write nothing else).",
            Origin::Merit => "merit's own event: only merit's broker user may publish it (to merit.internal); the same type on merit.events is dead-lettered as forbidden_type.",
        };
        messages.insert(
            name.clone(),
            json!({
                "name": event_type.as_str(),
                "title": event_type.as_str(),
                "summary": format!("The {} envelope, version 1. {who}", event_type.as_str()),
                "contentType": "application/json",
                "headers": key_headers(event_type),
                "payload": {
                    "schemaFormat": "application/schema+json;version=draft-07",
                    "schema": { "$ref": format!("schemas/{}.v1.json", event_type.as_str()) }
                },
                "correlationId": { "location": "$message.payload#/correlation_id" },
                "bindings": { "amqp": { "messageType": event_type.as_str(), "bindingVersion": "0.3.0" } }
            }),
        );
        channels.insert(
            name.clone(),
            json!({
                "address": event_type.as_str(),
                "title": format!("{} on {door}", event_type.as_str()),
                "description": format!(
                    "Routing key {} on the topic exchange {door}. {who}",
                    event_type.as_str()
                ),
                "servers": [{ "$ref": "#/servers/rabbitmq" }],
                "messages": { name.clone(): { "$ref": format!("#/components/messages/{name}") } },
                "bindings": exchange_binding(door, "topic"),
            }),
        );
        if event_type.origin() == Origin::Producer {
            operations.insert(
                format!("publish{}", upper_first(&name)),
                json!({
                    "action": "send",
                    "title": format!("Publish {}", event_type.as_str()),
                    "description": "Persistent (delivery mode 2), with publisher confirms; message_id = the envelope's id; a retry reuses the id, which merit applies at most once per actor kind.",
                    "channel": { "$ref": format!("#/channels/{name}") },
                    "messages": [{ "$ref": format!("#/channels/{name}/messages/{name}") }],
                    "bindings": { "amqp": { "deliveryMode": 2, "mandatory": false, "bindingVersion": "0.3.0" } }
                }),
            );
        }
    }

    /// The dead-letter queue, which operators read through merit.
    fn dead_letters(&mut self) {
        let Self {
            channels,
            operations,
            messages,
        } = self;
        messages.insert(
            "deadLetter".into(),
            json!({
                "name": "deadLetter",
                "title": "A dead letter",
                "summary": "The original message (body cut at 64 KiB) with its original headers and merit's x-merit-* headers. Its AMQP message id is the dead letter's id, derived from the message, its source queue, its reason class and the dead letter it replays, so dead-lettering one delivery twice records it once.",
                "contentType": "application/json",
                "headers": {
                    "type": "object",
                    "properties": {
                        "x-merit-reason-class": { "type": "string", "enum": reason_classes(), "description": "Why: a stable class for dashboards and alerts" },
                        "x-merit-reason": { "type": "string", "description": "The reason in words, naming the field at fault" },
                        "x-merit-attempts": { "type": "string", "description": "Deliveries or turns it had (decimal)" },
                        "x-merit-original-routing-key": { "type": "string" },
                        "x-merit-original-message-id": { "type": "string" },
                        "x-merit-source-queue": { "type": "string" },
                        "x-merit-dead-lettered-at": { "type": "string", "format": "date-time" },
                        "x-merit-origin": { "type": "string", "enum": ["producer", "merit"], "description": "The door it came through; a replay goes back through the same one" },
                        "x-merit-truncated-from": { "type": "string", "description": "The body's original size in bytes, when it was cut" },
                        "x-merit-replay-of": { "type": "string", "description": "On a message merit replayed from a dead letter: that dead letter's id (a replay that fails again becomes a new dead letter, one however often the replay was published)" }
                    },
                    "required": ["x-merit-reason-class", "x-merit-reason"]
                },
                "payload": { "description": "The original body, as received (it may not be JSON: that can be why it is here)" }
            }),
        );
        channels.insert(
            "deadLetters".into(),
            json!({
                "address": "merit.dlq",
                "title": "The dead-letter queue",
                "description": "Every message merit could not apply, with its reason. A hand-over point: each node's dead-letter recorder consumes it and acks a dead letter once it is stored in merit's dead-letter table (idempotent by id), where operators page, filter, replay and discard them through the admin API (/api/v1/dlq) or the dashboard. Do not consume it yourself: what you take is not recorded. The table keeps 100,000 dead letters (oldest settled, then oldest waiting, dropped past it).",
                "servers": [{ "$ref": "#/servers/rabbitmq" }],
                "messages": { "deadLetter": { "$ref": "#/components/messages/deadLetter" } },
                "bindings": {
                    "amqp": {
                        "is": "queue",
                        "queue": { "name": "merit.dlq", "durable": true, "exclusive": false, "autoDelete": false, "vhost": "/" },
                        "bindingVersion": "0.3.0"
                    }
                }
            }),
        );
        operations.insert(
            "readDeadLetters".into(),
            json!({
                "action": "receive",
                "title": "Dead letters (operators)",
                "channel": { "$ref": "#/channels/deadLetters" },
                "messages": [{ "$ref": "#/channels/deadLetters/messages/deadLetter" }]
            }),
        );
    }

    /// The fanout exchange that carries notifications between nodes.
    fn notify_fanout(&mut self) {
        let Self {
            channels,
            operations,
            messages,
        } = self;
        messages.insert(
            "notifyFanout".into(),
            json!({
                "name": "notifyFanout",
                "title": "Notifications between nodes",
                "summary": "A node's committed user notifications, for the other nodes' WebSocket sessions. Fire and forget: each user's notification log is the durable copy.",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["origin", "items"],
                    "properties": {
                        "origin": { "type": "string", "description": "The node id that sent it (a node ignores its own)" },
                        "items": { "type": "array", "items": { "$ref": "#/components/schemas/notification" } }
                    }
                }
            }),
        );
        channels.insert(
            "notify".into(),
            json!({
                "address": NOTIFY_EXCHANGE,
                "title": "The notification fan-out",
                "description": "A fanout exchange between merit nodes; each node binds an exclusive, auto-delete queue. Internal: producers may not publish to it.",
                "servers": [{ "$ref": "#/servers/rabbitmq" }],
                "messages": { "notifyFanout": { "$ref": "#/components/messages/notifyFanout" } },
                "bindings": exchange_binding(NOTIFY_EXCHANGE, "fanout"),
            }),
        );
        operations.insert(
            "fanOutNotifications".into(),
            json!({
                "action": "send",
                "title": "Nodes share notifications",
                "channel": { "$ref": "#/channels/notify" },
                "messages": [{ "$ref": "#/channels/notify/messages/notifyFanout" }]
            }),
        );
    }

    /// The `/ws` frames a client receives.
    fn websocket(&mut self) {
        let Self {
            channels,
            operations,
            messages,
        } = self;
        messages.insert(
            "wsHello".into(),
            json!({
                "name": "hello",
                "title": "Session opened",
                "contentType": "application/json",
                "payload": {
                    "type": "object",
                    "required": ["type", "user", "last_seq"],
                    "properties": {
                        "type": { "const": "hello" },
                        "user": { "type": "string", "description": "The token's wallet, lowercase 0x address" },
                        "last_seq": { "type": "integer", "minimum": 0, "description": "The after= the session started from; notifications with a higher seq follow" }
                    }
                }
            }),
        );
        messages.insert(
            "wsNotification".into(),
            json!({
                "name": "notification",
                "title": "A notification",
                "summary": "One entry of the user's notification log, in seq order without gaps. Reconnect with ?after=<last seq> to resume.",
                "contentType": "application/json",
                "payload": {
                    "allOf": [
                        { "type": "object", "required": ["type"], "properties": { "type": { "const": "notification" } } },
                        { "$ref": "#/components/schemas/notification" }
                    ]
                }
            }),
        );
        channels.insert(
            "ws".into(),
            json!({
                "address": "/ws",
                "title": "WebSocket notifications",
                "description": "A user's notifications, live. Authenticate with a user JWT (Authorization: Bearer, or ?token= for clients that cannot set headers); ?after=N resumes after seq N (default: from now). A client that does not read is closed with 1008.",
                "servers": [{ "$ref": "#/servers/node" }],
                "messages": {
                    "hello": { "$ref": "#/components/messages/wsHello" },
                    "notification": { "$ref": "#/components/messages/wsNotification" }
                },
                "bindings": {
                    "ws": {
                        "query": {
                            "type": "object",
                            "properties": {
                                "after": { "type": "integer", "minimum": 0, "description": "Resume after this seq of the user's log" },
                                "token": { "type": "string", "description": "The user JWT, for clients that cannot send an Authorization header" }
                            }
                        },
                        "bindingVersion": "0.1.0"
                    }
                }
            }),
        );
        operations.insert(
            "receiveNotifications".into(),
            json!({
                "action": "receive",
                "title": "A client receives its notifications",
                "channel": { "$ref": "#/channels/ws" },
                "messages": [
                    { "$ref": "#/channels/ws/messages/hello" },
                    { "$ref": "#/channels/ws/messages/notification" }
                ]
            }),
        );
    }
}

/// The whole document.
pub(crate) fn document() -> Value {
    let mut sections = Sections::default();
    for &event_type in EventType::ALL {
        sections.event(event_type);
    }
    sections.dead_letters();
    sections.notify_fanout();
    sections.websocket();
    let Sections {
        channels,
        operations,
        messages,
    } = sections;
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "merit",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "merit's message contracts: the events producers publish over AMQP (and merit's own, which only merit may publish), the dead-letter queue, the notification fan-out between nodes, and the WebSocket notifications users receive. Envelope payloads are the JSON Schemas in schemas/ (draft 2020-12), generated from merit's types. Generated by `merit schema --asyncapi`."
        },
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0-9-1",
                "description": "RabbitMQ with quorum queues and the rabbitmq_consistent_hash_exchange plugin; set your own host and vhost."
            },
            "node": {
                "host": "localhost:8080",
                "protocol": "ws",
                "description": "A merit node's HTTP listener (MERIT_HTTP_ADDR)."
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "notification": notification_schema()
            }
        }
    })
}

/// An entry of a user's notification log, as the `/ws` frames and the fan-out carry it.
fn notification_schema() -> Value {
    // The types a UserActor writes to a user's notification log.
    let kinds = [
        "governance.vote.recorded",
        "governance.proposal.closed",
        "governance.proposal.result",
        "achievement.unlocked",
        "achievement.minted",
        "achievement.failed",
        "user.benefits.changed",
    ];
    json!({
        "type": "object",
        "required": ["seq", "event_id", "kind", "payload", "at"],
        "properties": {
            "seq": { "type": "integer", "minimum": 1, "description": "Position in the user's log, from 1, without gaps" },
            "event_id": { "type": "string", "format": "uuid" },
            "kind": { "type": "string", "enum": kinds, "description": "The event type reported" },
            "payload": { "type": "object", "description": "That event's payload (see the event's schema)" },
            "at": { "type": "string", "format": "date-time" }
        }
    })
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_a_channel_and_only_producer_types_an_operation() {
        let doc = document();
        for &t in EventType::ALL {
            let name = component_name(t);
            assert_eq!(doc["channels"][&name]["address"], t.as_str());
            let publish = &doc["operations"][format!("publish{}", upper_first(&name))];
            assert_eq!(publish.is_object(), t.origin() == Origin::Producer, "{t}");
        }
        for kind in doc["components"]["schemas"]["notification"]["properties"]["kind"]["enum"]
            .as_array()
            .expect("kinds")
        {
            let kind = kind.as_str().expect("a string");
            assert!(kind.parse::<EventType>().is_ok(), "{kind} is an event type");
        }
    }
}
