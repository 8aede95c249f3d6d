//! How a message finds its mailbox: the key headers that name the actors it concerns, the
//! shard a key belongs to, and what to do with a message that has no mailbox.
//!
//! On RabbitMQ the broker applies these rules itself (topic bindings per event type, a
//! header gate and a consistent-hash exchange per actor kind); the in-process transport
//! and the unrouted mover apply them in code through [`classify`], so both transports
//! agree on what is routable.

use std::{collections::BTreeMap, fmt};

use merit_messages::{ActorKind, EventType, Origin};

use crate::deadletter::DeadLetterReason;

/// One shard queue: the `index`-th mailbox of actor `kind`. Displays as `user.3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    /// The actor kind whose messages the shard holds.
    pub kind: ActorKind,
    /// The shard's number, `0..shards`.
    pub index: u16,
}

impl ShardId {
    /// The shard `index` of `kind`.
    pub fn new(kind: ActorKind, index: u16) -> Self {
        Self { kind, index }
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.index)
    }
}

/// The header that carries the key of actor `kind` (`merit-user`, `merit-proposal`,
/// `merit-nft`). Its value is the actor's key as [`merit_messages::ActorKeys::key_for`]
/// renders it; RabbitMQ hashes it to pick the shard.
pub fn key_header(kind: ActorKind) -> &'static str {
    match kind {
        ActorKind::User => "merit-user",
        ActorKind::Proposal => "merit-proposal",
        ActorKind::Nft => "merit-nft",
    }
}

/// The shard of `key` among `shards`, for the in-process transport: FNV-1a (64 bit) of the
/// key's bytes modulo `shards`. Stable across runs, platforms and releases. RabbitMQ does
/// its own hashing, so the two transports place keys differently; only "one key, one
/// shard" is shared. Returns 0 when `shards` is 0.
pub fn shard_for(key: &str, shards: u16) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    if shards == 0 {
        return 0;
    }
    let hash = key
        .bytes()
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    u16::try_from(hash % u64::from(shards)).expect("a remainder of a u16 modulus fits in u16")
}

/// Where a message goes, decided from its routing key and headers alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// The routing key is no known event type.
    UnknownType,
    /// A type only merit may publish, arriving through the producers' door.
    Forbidden(EventType),
    /// A known type that no actor kind handles (broadcasts such as `config.changed`):
    /// it is for whoever bound a queue to it, and nobody's mailbox.
    NoHandlers,
    /// A known type for actors: the kinds with a key (and the key), and the handler kinds
    /// whose key header is absent or empty.
    Actors {
        /// `(kind, key)` for each handler kind whose header is present.
        targets: Vec<(ActorKind, String)>,
        /// Handler kinds whose key header is absent.
        missing: Vec<ActorKind>,
    },
}

/// Routes a message that came in through `door` the way the RabbitMQ topology does: the
/// producers' exchange routes only [`Origin::Producer`] types, merit's internal exchange
/// every type.
pub(crate) fn route(routing_key: &str, headers: &BTreeMap<String, String>, door: Origin) -> Route {
    let Ok(event_type) = routing_key.parse::<EventType>() else {
        return Route::UnknownType;
    };
    if door == Origin::Producer && event_type.origin() == Origin::Merit {
        return Route::Forbidden(event_type);
    }
    let kinds = event_type.handlers();
    if kinds.is_empty() {
        return Route::NoHandlers;
    }
    let mut targets = Vec::new();
    let mut missing = Vec::new();
    for &kind in kinds {
        match headers.get(key_header(kind)) {
            Some(key) if !key.is_empty() => targets.push((kind, key.clone())),
            _ => missing.push(kind),
        }
    }
    Route::Actors { targets, missing }
}

/// Why a message that reached no mailbox is dead-lettered, or `None` when it was not meant
/// for a mailbox (a known type no actor handles) and may be dropped.
pub(crate) fn classify(
    routing_key: &str,
    headers: &BTreeMap<String, String>,
    door: Origin,
) -> Option<DeadLetterReason> {
    match route(routing_key, headers, door) {
        Route::Forbidden(event_type) => Some(forbidden(event_type)),
        Route::UnknownType => Some(DeadLetterReason::new(
            DeadLetterReason::UNKNOWN_TYPE,
            format!(
                "routing key {routing_key:?} is not a known event type: expected one of {}",
                EventType::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            0,
        )),
        Route::NoHandlers => None,
        Route::Actors { missing, .. } if !missing.is_empty() => {
            let headers: Vec<&str> = missing.iter().map(|&k| key_header(k)).collect();
            Some(DeadLetterReason::new(
                DeadLetterReason::MISSING_KEY,
                format!(
                    "{routing_key} is handled by {} but header {} is missing or empty",
                    missing
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(" and "),
                    headers.join(", ")
                ),
                0,
            ))
        }
        Route::Actors { .. } => Some(DeadLetterReason::new(
            DeadLetterReason::UNROUTED,
            format!(
                "{routing_key} carries every key its handlers need yet reached no shard queue: \
                 is the topology declared?"
            ),
            0,
        )),
    }
}

/// The reason for an event of a type only merit may publish that arrived through the
/// producers' exchange.
pub fn forbidden(event_type: EventType) -> DeadLetterReason {
    DeadLetterReason::new(
        DeadLetterReason::FORBIDDEN_TYPE,
        format!(
            "{event_type} is published by merit alone (on its internal exchange); producers may \
             publish {}",
            EventType::ALL
                .iter()
                .filter(|t| t.origin() == Origin::Producer)
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn shard_for_is_stable_and_in_range() {
        // FNV-1a of "" is the offset basis; of "a" is 0xaf63dc4c8601ec8c.
        assert_eq!(shard_for("", 7), (0xcbf2_9ce4_8422_2325u64 % 7) as u16);
        assert_eq!(
            shard_for("a", 1000),
            (0xaf63_dc4c_8601_ec8cu64 % 1000) as u16
        );
        for i in 0..1000 {
            let key = format!("key-{i}");
            assert!(shard_for(&key, 8) < 8);
            assert_eq!(shard_for(&key, 8), shard_for(&key, 8));
        }
        assert_eq!(shard_for("x", 0), 0);
    }

    #[test]
    fn shard_for_spreads_keys() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_for(&format!("0x{i:040x}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn unknown_type_and_missing_keys_are_classified() {
        let none = headers(&[]);
        let r = classify("no.such.type", &none, Origin::Merit).expect("dead-lettered");
        assert_eq!(r.class, "unknown_type");
        assert!(r.detail.contains("no.such.type"), "{}", r.detail);

        let r = classify(
            "governance.vote.cast",
            &headers(&[("merit-user", "0xab")]),
            Origin::Producer,
        )
        .expect("dead-lettered");
        assert_eq!(r.class, "missing_key");
        assert!(r.detail.contains("merit-proposal"), "{}", r.detail);
        assert!(!r.detail.contains("merit-user"), "{}", r.detail);

        assert!(classify("config.changed", &none, Origin::Merit).is_none());
        let full = headers(&[("merit-nft", "7")]);
        assert_eq!(
            route("nft.transferred", &full, Origin::Merit),
            Route::Actors {
                targets: vec![(ActorKind::Nft, "7".into())],
                missing: vec![]
            }
        );
        assert_eq!(
            classify("nft.transferred", &full, Origin::Merit)
                .expect("unrouted")
                .class,
            "unrouted"
        );
    }

    #[test]
    fn merit_types_through_the_producers_door_are_forbidden() {
        let user = headers(&[("merit-user", "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")]);
        let r = classify("user.holdings.changed", &user, Origin::Producer).expect("refused");
        assert_eq!(r.class, "forbidden_type");
        assert!(r.detail.contains("governance.vote.cast"), "{}", r.detail);
        // Through merit's own door the same message is routable.
        assert!(matches!(
            route("user.holdings.changed", &user, Origin::Merit),
            Route::Actors { .. }
        ));
        // Producer types pass through either door; a broadcast type is still forbidden
        // to producers (nobody may fake a config change).
        let proposal = headers(&[("merit-proposal", "p-1")]);
        for door in [Origin::Producer, Origin::Merit] {
            assert!(matches!(
                route("governance.vote.cast", &proposal, door),
                Route::Actors { .. }
            ));
        }
        assert_eq!(
            classify("config.changed", &headers(&[]), Origin::Producer)
                .expect("refused")
                .class,
            "forbidden_type"
        );
    }

    #[test]
    fn shard_id_displays_kind_dot_index() {
        assert_eq!(ShardId::new(ActorKind::User, 3).to_string(), "user.3");
    }
}
