//! The traffic: every flaw a producer can cause, good votes, and their proposals.

use std::collections::{HashMap, HashSet};

use merit_mailbox::Outgoing;
use merit_messages::{Address, Envelope, VoteCast, VoteChoice};
use rand::seq::SliceRandom;
use serde_json::{json, Value};

use crate::common;

pub(crate) const PROPOSALS: u32 = 20;
pub(crate) const VOTES: u32 = 2_000;
pub(crate) const MALFORMED: usize = 10_000;
/// Oversized messages are 70 KB each: fewer of them keeps the DLQ small.
const OVERSIZED: usize = 250;
pub(crate) const BATCH: usize = 500;
/// The bound on every wait for the node.
pub(crate) const WAIT_SECS: u64 = 120;
pub(crate) const VOTE_CAST: &str = "governance.vote.cast";
pub(crate) const UNKNOWN_TYPE: &str = "governance.vote.exploded";

/// One way a producer can get a message wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Flaw {
    /// Not JSON at all.
    BadJson,
    /// A valid envelope cut off half-way.
    TruncatedJson,
    /// `payload.choice` is a number.
    WrongPayloadType,
    /// `version` is a string.
    WrongEnvelopeType,
    /// `payload.voter` is mixed-case with a wrong EIP-55 checksum.
    BadChecksum,
    /// The routing key is no event type (the unrouted mover classifies it).
    UnknownRoutingKey,
    /// The routing key is known but the envelope's `type` is not.
    UnknownBodyType,
    /// `version` 2 of a type that only has 1.
    UnknownVersion,
    /// `payload.voter` is left out.
    MissingPayloadKey,
    /// `occurred_at` is left out.
    MissingEnvelopeKey,
    /// Over 64 KiB.
    Oversized,
    /// The `merit-proposal` header names another proposal than the payload.
    HeaderMismatch,
    /// The envelope's `keys` name another proposal than the payload.
    KeysMismatch,
    /// No `merit-proposal` header (the unrouted mover classifies it).
    MissingKeyHeader,
    /// A valid `governance.proposal.cancelled` published as `governance.vote.cast`.
    TypeMismatch,
    /// The envelope's fields as a positional JSON array.
    ArrayEnvelope,
}

impl Flaw {
    pub(crate) const ALL: [Flaw; 16] = [
        Flaw::BadJson,
        Flaw::TruncatedJson,
        Flaw::WrongPayloadType,
        Flaw::WrongEnvelopeType,
        Flaw::BadChecksum,
        Flaw::UnknownRoutingKey,
        Flaw::UnknownBodyType,
        Flaw::UnknownVersion,
        Flaw::MissingPayloadKey,
        Flaw::MissingEnvelopeKey,
        Flaw::Oversized,
        Flaw::HeaderMismatch,
        Flaw::KeysMismatch,
        Flaw::MissingKeyHeader,
        Flaw::TypeMismatch,
        Flaw::ArrayEnvelope,
    ];

    /// The dead-letter class merit documents for it.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Flaw::BadJson | Flaw::TruncatedJson | Flaw::ArrayEnvelope => "malformed",
            Flaw::TypeMismatch => "type_mismatch",
            Flaw::WrongPayloadType | Flaw::WrongEnvelopeType | Flaw::BadChecksum => "invalid_field",
            Flaw::UnknownRoutingKey | Flaw::UnknownBodyType => "unknown_type",
            Flaw::UnknownVersion => "unknown_version",
            Flaw::MissingPayloadKey | Flaw::MissingEnvelopeKey => "missing_field",
            Flaw::Oversized => "oversized",
            Flaw::HeaderMismatch | Flaw::KeysMismatch => "key_mismatch",
            Flaw::MissingKeyHeader => "missing_key",
        }
    }

    /// What the reason must mention: the field at fault (or the header, routing key or
    /// limit where there is no field).
    pub(crate) fn needle(self) -> &'static str {
        match self {
            Flaw::BadJson | Flaw::TruncatedJson => "malformed: ",
            Flaw::WrongPayloadType => "payload.choice",
            Flaw::WrongEnvelopeType | Flaw::UnknownVersion => "version",
            Flaw::BadChecksum => "payload.voter",
            Flaw::UnknownRoutingKey => UNKNOWN_TYPE,
            Flaw::UnknownBodyType => "type: \"governance.vote.exploded\"",
            Flaw::MissingPayloadKey => "payload.voter",
            Flaw::MissingEnvelopeKey => "occurred_at",
            Flaw::Oversized => "65536",
            Flaw::HeaderMismatch | Flaw::MissingKeyHeader => "merit-proposal",
            Flaw::KeysMismatch => "keys",
            Flaw::TypeMismatch => "routing key",
            Flaw::ArrayEnvelope => "JSON object",
        }
    }

    /// Whether it reaches a proposal shard (and is classified by its consumer) rather
    /// than the unrouted mover.
    pub(crate) fn reaches_a_shard(self) -> bool {
        !matches!(self, Flaw::UnknownRoutingKey | Flaw::MissingKeyHeader)
    }

    pub(crate) fn count(self) -> usize {
        if self == Flaw::Oversized {
            OVERSIZED
        } else {
            (MALFORMED - OVERSIZED) / (Flaw::ALL.len() - 1)
        }
    }
}

fn proposal(p: u32) -> String {
    format!("p-{}", p % PROPOSALS)
}

/// Good vote `k`: every (voter, proposal) pair once, 100 voters per proposal.
fn good_vote(k: u32) -> Envelope {
    Envelope::new(
        "malformed-test",
        VoteCast {
            proposal: proposal(k).parse().expect("proposal id"),
            voter: common::wallet(k / PROPOSALS),
            choice: VoteChoice::For,
            reason: None,
        },
    )
}

/// A mixed-case address whose EIP-55 checksum is wrong.
fn bad_checksum(i: u32) -> String {
    let mut bytes = [0xab_u8; 20];
    bytes[16..].copy_from_slice(&i.to_be_bytes());
    let good = Address(bytes).to_checksum();
    let flip = good[2..]
        .char_indices()
        .find(|(_, c)| c.is_ascii_alphabetic())
        .map(|(at, _)| at + 2)
        .expect("0xab bytes give hex letters");
    let mut bad: Vec<char> = good.chars().collect();
    bad[flip] = if bad[flip].is_ascii_uppercase() {
        bad[flip].to_ascii_lowercase()
    } else {
        bad[flip].to_ascii_uppercase()
    };
    let bad: String = bad.into_iter().collect();
    assert!(
        bad[2..].chars().any(|c| c.is_ascii_uppercase())
            && bad[2..].chars().any(|c| c.is_ascii_lowercase()),
        "{bad} is mixed-case"
    );
    assert!(bad.parse::<Address>().is_err(), "{bad} is refused");
    bad
}

/// Malformed message `i` with `flaw`. Its key header names one of the good proposals
/// (so it shares shards and keys with good traffic) unless the flaw is the header.
fn malformed(i: u32, flaw: Flaw) -> Outgoing {
    let p = proposal(i);
    let env = Envelope::new(
        "malformed-test",
        VoteCast {
            proposal: p.parse().expect("proposal id"),
            voter: common::wallet(100_000 + i),
            choice: VoteChoice::Against,
            reason: None,
        },
    );
    let routing_key = if flaw == Flaw::UnknownRoutingKey {
        UNKNOWN_TYPE
    } else {
        VOTE_CAST
    };
    let header = match flaw {
        Flaw::HeaderMismatch => Some(proposal(i + 1)),
        Flaw::MissingKeyHeader => None,
        _ => Some(p.clone()),
    };
    let body = flawed_body(i, flaw, &env, &p);
    if flaw == Flaw::Oversized {
        assert!(body.len() > merit_messages::MAX_ENVELOPE_BYTES);
    }
    let mut out = Outgoing::new(routing_key, format!("malformed-{i:05}-{flaw:?}"), body);
    out.correlation_id = Some(env.correlation_id.to_string());
    if let Some(h) = header {
        out = out.with_header("merit-proposal", h);
    }
    // A user header on every message: vote.cast is not the user kind's, so it must not
    // matter where the proposal header is missing.
    out.with_header("merit-user", env.keys.user.expect("voter").to_string())
}

/// The body of malformed message `i` with `flaw`, made from `env` (a vote on `p`).
fn flawed_body(i: u32, flaw: Flaw, env: &Envelope, p: &str) -> Vec<u8> {
    let json = env.to_json();
    let mut v: Value = serde_json::from_slice(&json).expect("an envelope is JSON");
    match flaw {
        Flaw::BadJson => format!("{{\"id\": oops-{i}").into_bytes(),
        Flaw::TruncatedJson => json[..json.len() / 2].to_vec(),
        // The envelope is sound; the routing key or a header is not.
        Flaw::UnknownRoutingKey | Flaw::HeaderMismatch | Flaw::MissingKeyHeader => json,
        Flaw::TypeMismatch => {
            let voter: Address = v["payload"]["voter"]
                .as_str()
                .expect("voter")
                .parse()
                .expect("address");
            Envelope::new(
                "malformed-test",
                merit_messages::ProposalCancelled {
                    proposal: p.parse().expect("proposal id"),
                    by: voter,
                    reason: String::new(),
                },
            )
            .to_json()
        }
        Flaw::ArrayEnvelope => {
            let fields = ["id", "type", "version", "source", "occurred_at"]
                .iter()
                .map(|k| v[*k].clone())
                .chain([Value::Null, Value::Null, Value::Null, v["payload"].clone()])
                .collect::<Vec<_>>();
            serde_json::to_vec(&fields).expect("json")
        }
        _ => {
            edit_field(i, flaw, &mut v);
            serde_json::to_vec(&v).expect("json")
        }
    }
}

/// Gets one field of the envelope `v` wrong, as `flaw` says.
fn edit_field(i: u32, flaw: Flaw, v: &mut Value) {
    match flaw {
        Flaw::WrongPayloadType => v["payload"]["choice"] = json!(42),
        Flaw::WrongEnvelopeType => v["version"] = json!("1"),
        Flaw::BadChecksum => v["payload"]["voter"] = json!(bad_checksum(i)),
        Flaw::UnknownBodyType => v["type"] = json!(UNKNOWN_TYPE),
        Flaw::UnknownVersion => v["version"] = json!(2),
        Flaw::MissingPayloadKey => {
            v["payload"]
                .as_object_mut()
                .expect("payload")
                .remove("voter");
        }
        Flaw::MissingEnvelopeKey => {
            v.as_object_mut().expect("envelope").remove("occurred_at");
        }
        Flaw::Oversized => v["payload"]["reason"] = json!("x".repeat(70_000)),
        Flaw::KeysMismatch => v["keys"]["proposal"] = json!(proposal(i + 1)),
        other => unreachable!("{other:?} is not a field's flaw"),
    }
}

/// What is published: every malformed message by id with its flaw, the ids of the good
/// messages, the proposals, and the rest shuffled together.
pub(crate) struct Traffic {
    pub(crate) sent: HashMap<String, (Flaw, Outgoing)>,
    pub(crate) good_ids: HashSet<String>,
    pub(crate) proposals: Vec<Outgoing>,
    pub(crate) shuffled: Vec<Outgoing>,
}

/// The traffic: 10,000 malformed messages and 2,000 good votes, shuffled together, after
/// the 20 proposals the votes are for.
pub(crate) fn traffic(rng: &mut rand::rngs::StdRng) -> Traffic {
    let mut flaws: Vec<Flaw> = Flaw::ALL
        .iter()
        .flat_map(|&f| std::iter::repeat_n(f, f.count()))
        .collect();
    assert_eq!(flaws.len(), MALFORMED);
    flaws.shuffle(rng);
    let mut sent: HashMap<String, (Flaw, Outgoing)> = HashMap::new();
    let mut shuffled: Vec<Outgoing> = Vec::with_capacity(MALFORMED + VOTES as usize);
    for (i, &flaw) in flaws.iter().enumerate() {
        let out = malformed(u32::try_from(i).expect("index"), flaw);
        shuffled.push(out.clone());
        sent.insert(out.message_id.clone(), (flaw, out));
    }
    let good: Vec<Outgoing> = (0..VOTES)
        .map(|k| Outgoing::from_envelope(&good_vote(k)))
        .collect();
    shuffled.extend(good.iter().cloned());
    shuffled.shuffle(rng);
    let proposals: Vec<Outgoing> = (0..PROPOSALS)
        .map(|p| Outgoing::from_envelope(&common::open_proposal(&proposal(p))))
        .collect();
    let good_ids = proposals
        .iter()
        .chain(good.iter())
        .map(|o| o.message_id.clone())
        .collect();
    Traffic {
        sent,
        good_ids,
        proposals,
        shuffled,
    }
}
