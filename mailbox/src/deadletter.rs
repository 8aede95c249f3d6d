//! Dead letters: messages merit gave up on, kept with the reason so an operator can read,
//! replay or discard them. Both transports store the same record; on RabbitMQ it travels
//! as the original message plus `x-merit-*` headers in the queue `merit.dlq`.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use merit_messages::Origin;

use crate::outgoing::Outgoing;

/// Header: the reason class (`unknown_type`, `handler_error`, …).
pub(crate) const REASON_CLASS: &str = "x-merit-reason-class";
/// Header: the human-readable reason.
pub(crate) const REASON: &str = "x-merit-reason";
/// Header: handling attempts before giving up.
pub(crate) const ATTEMPTS: &str = "x-merit-attempts";
/// Header: the routing key the message was published with.
pub(crate) const ORIGINAL_ROUTING_KEY: &str = "x-merit-original-routing-key";
/// Header: the original AMQP message id (the dead letter's own message id is its id).
pub(crate) const ORIGINAL_MESSAGE_ID: &str = "x-merit-original-message-id";
/// Header: the queue the message was taken from.
pub(crate) const SOURCE_QUEUE: &str = "x-merit-source-queue";
/// Header: when it was dead-lettered (RFC 3339, UTC).
pub(crate) const DEAD_LETTERED_AT: &str = "x-merit-dead-lettered-at";
/// Header: the door it came in through (`producer` or `merit`); a replay goes back
/// through the same one. Absent means `producer`.
pub(crate) const ORIGIN: &str = "x-merit-origin";
/// Header: the original body's size in bytes when the stored body was cut short.
pub(crate) const TRUNCATED_FROM: &str = "x-merit-truncated-from";
/// Header on a replayed message: the id of the dead letter it replays. It makes the id of
/// a dead letter the replay itself becomes differ from the one it replays, while a
/// replay published twice (a crash between confirm and mark) still makes one dead letter.
pub(crate) const REPLAY_OF: &str = "x-merit-replay-of";

/// Most bytes of a body a dead letter keeps: an envelope can be no larger, so only a
/// message refused as `oversized` is ever cut (and it could never be replayed anyway).
pub const MAX_DEAD_LETTER_BODY: usize = merit_messages::MAX_ENVELOPE_BYTES;

/// Why a message is being dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// A stable class for dashboards and metrics; see the associated constants.
    pub class: String,
    /// What was wrong, naming the field and value where there is one.
    pub detail: String,
    /// How many times handling was attempted (0 when it never reached a handler).
    pub attempts: u32,
}

impl DeadLetterReason {
    /// The body is not a decodable envelope.
    pub const MALFORMED: &'static str = "malformed";
    /// The routing key or `type` names no known event type.
    pub const UNKNOWN_TYPE: &'static str = "unknown_type";
    /// The handler kept failing.
    pub const HANDLER_ERROR: &'static str = "handler_error";
    /// A known type without the key header one of its handler kinds needs.
    pub const MISSING_KEY: &'static str = "missing_key";
    /// The key header disagrees with the keys in the envelope.
    pub const KEY_MISMATCH: &'static str = "key_mismatch";
    /// The envelope's `type` is not the routing key it was published with.
    pub const TYPE_MISMATCH: &'static str = "type_mismatch";
    /// Routable in principle, yet it reached no shard (topology missing).
    pub const UNROUTED: &'static str = "unrouted";
    /// A type only merit may publish (`governance.vote.recorded`, `nft.minted`, …) that
    /// arrived through the producers' exchange.
    pub const FORBIDDEN_TYPE: &'static str = "forbidden_type";

    /// A reason of `class`.
    pub fn new(class: impl Into<String>, detail: impl Into<String>, attempts: u32) -> Self {
        Self {
            class: class.into(),
            detail: detail.into(),
            attempts,
        }
    }
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Stable id of this dead letter, for replay and discard (its AMQP message id).
    pub id: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// [`DeadLetterReason::class`].
    pub reason_class: String,
    /// [`DeadLetterReason::detail`].
    pub reason: String,
    /// [`DeadLetterReason::attempts`].
    pub attempts: u32,
    /// The original body, unchanged unless it was longer than [`MAX_DEAD_LETTER_BODY`]
    /// (then its first bytes, and `truncated_from` says how long it was).
    pub body: Bytes,
    /// The original body's length when `body` was cut short.
    pub truncated_from: Option<usize>,
    /// The door it came in through; a replay goes back through it.
    pub origin: Origin,
    /// When it was dead-lettered, RFC 3339 UTC.
    pub dead_lettered_at: String,
    /// The queue it was taken from (a shard queue, or `merit.unrouted`).
    pub source_queue: String,
    /// The original message id, if it had one.
    pub message_id: Option<String>,
    /// The original correlation id, if it had one.
    pub correlation_id: Option<String>,
    /// The original application headers (key headers included, broker headers removed).
    pub headers: BTreeMap<String, String>,
}

/// A dead letter taken from the dead-letter queue, to be recorded: [`ack`](Self::ack) it
/// once it is stored. Dropped unacked, it stays in (RabbitMQ: returns to) the queue.
pub struct DeadLetterDelivery {
    /// The dead letter.
    pub dead_letter: DeadLetter,
    settler: DeadLetterSettler,
}

enum DeadLetterSettler {
    Rabbit(crate::rabbit::Settler),
    InProcess(crate::inproc::DeadLetterSettler),
}

impl DeadLetterDelivery {
    pub(crate) fn rabbit(dead_letter: DeadLetter, settler: crate::rabbit::Settler) -> Self {
        Self {
            dead_letter,
            settler: DeadLetterSettler::Rabbit(settler),
        }
    }

    pub(crate) fn in_process(
        dead_letter: DeadLetter,
        settler: crate::inproc::DeadLetterSettler,
    ) -> Self {
        Self {
            dead_letter,
            settler: DeadLetterSettler::InProcess(settler),
        }
    }

    /// Removes it from the queue: it is recorded.
    pub async fn ack(self) -> crate::error::Result<()> {
        match self.settler {
            DeadLetterSettler::Rabbit(s) => s.ack().await,
            DeadLetterSettler::InProcess(s) => {
                s.ack(&self.dead_letter.id);
                Ok(())
            }
        }
    }
}

impl crate::rabbit::Release for DeadLetterDelivery {
    fn release(self) {
        if let DeadLetterSettler::Rabbit(s) = self.settler {
            s.release();
        }
    }
}

impl std::fmt::Debug for DeadLetterDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetterDelivery")
            .field("id", &self.dead_letter.id)
            .finish_non_exhaustive()
    }
}

/// What a transport knows about a message it is about to dead-letter.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub(crate) routing_key: String,
    pub(crate) body: Bytes,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) message_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) source_queue: String,
    pub(crate) origin: Origin,
}

impl DeadLetter {
    /// A new dead letter, stamped now. Its id is derived from what was dead-lettered
    /// (source queue, routing key, message id, body, reason class and the dead letter it
    /// replays, if any), so dead-lettering one delivery twice (a crash after the dead
    /// letter was confirmed but before the original was acked) records it once.
    pub(crate) fn from_draft(draft: Draft, reason: &DeadLetterReason) -> Self {
        let id = dead_letter_id(&[
            b"merit",
            draft.source_queue.as_bytes(),
            draft.routing_key.as_bytes(),
            draft.message_id.as_deref().unwrap_or("").as_bytes(),
            &draft.body,
            reason.class.as_bytes(),
            draft
                .headers
                .get(REPLAY_OF)
                .map_or(&b""[..], |r| r.as_bytes()),
        ]);
        let (body, truncated_from) = if draft.body.len() > MAX_DEAD_LETTER_BODY {
            (
                draft.body.slice(..MAX_DEAD_LETTER_BODY),
                Some(draft.body.len()),
            )
        } else {
            (draft.body, None)
        };
        Self {
            truncated_from,
            origin: draft.origin,
            id,
            routing_key: draft.routing_key,
            reason_class: reason.class.clone(),
            reason: reason.detail.clone(),
            attempts: reason.attempts,
            body,
            dead_lettered_at: rfc3339(SystemTime::now()),
            source_queue: draft.source_queue,
            message_id: draft.message_id,
            correlation_id: draft.correlation_id,
            headers: application_headers(&draft.headers),
        }
    }

    /// The headers it travels with on RabbitMQ: the original ones plus `x-merit-*`.
    pub(crate) fn wire_headers(&self) -> BTreeMap<String, String> {
        let mut h = self.headers.clone();
        h.insert(REASON_CLASS.into(), self.reason_class.clone());
        h.insert(REASON.into(), self.reason.clone());
        h.insert(ATTEMPTS.into(), self.attempts.to_string());
        h.insert(ORIGINAL_ROUTING_KEY.into(), self.routing_key.clone());
        h.insert(SOURCE_QUEUE.into(), self.source_queue.clone());
        h.insert(DEAD_LETTERED_AT.into(), self.dead_lettered_at.clone());
        if let Some(id) = &self.message_id {
            h.insert(ORIGINAL_MESSAGE_ID.into(), id.clone());
        }
        h.insert(ORIGIN.into(), self.origin.as_str().into());
        if let Some(n) = self.truncated_from {
            h.insert(TRUNCATED_FROM.into(), n.to_string());
        }
        h
    }

    /// Reads a dead letter back from a DLQ message. Fields a foreign tool left out come
    /// back empty rather than failing, so one odd message does not hide the others.
    pub(crate) fn from_wire(
        id: String,
        body: Bytes,
        correlation_id: Option<String>,
        headers: &BTreeMap<String, String>,
    ) -> Self {
        let get = |name: &str| headers.get(name).cloned().unwrap_or_default();
        Self {
            id,
            routing_key: get(ORIGINAL_ROUTING_KEY),
            reason_class: get(REASON_CLASS),
            reason: get(REASON),
            attempts: headers
                .get(ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            body,
            truncated_from: headers.get(TRUNCATED_FROM).and_then(|n| n.parse().ok()),
            // Only merit writes to the dead-letter exchange, so the header is its own.
            origin: match headers.get(ORIGIN).map(String::as_str) {
                Some("merit") => Origin::Merit,
                _ => Origin::Producer,
            },
            dead_lettered_at: get(DEAD_LETTERED_AT),
            source_queue: get(SOURCE_QUEUE),
            message_id: headers.get(ORIGINAL_MESSAGE_ID).cloned(),
            correlation_id,
            headers: application_headers(headers),
        }
    }

    /// The message that replays it: original routing key, body, ids and headers, through
    /// the door it came in by (a producer's message refused as one of merit's own types is
    /// refused again, never laundered onto merit's exchange), marked as a replay of this
    /// dead letter.
    pub fn replay_message(&self) -> Outgoing {
        let mut headers = self.headers.clone();
        headers.insert(REPLAY_OF.to_string(), self.id.clone());
        Outgoing {
            routing_key: self.routing_key.clone(),
            body: self.body.clone(),
            message_id: self.message_id.clone().unwrap_or_else(|| self.id.clone()),
            correlation_id: self.correlation_id.clone(),
            headers,
            origin: self.origin,
        }
    }
}

/// A name-based (v5) UUID of `parts`, each length-prefixed so no two lists of parts
/// collide by concatenation.
pub(crate) fn dead_letter_id(parts: &[&[u8]]) -> String {
    /// merit's namespace for dead-letter ids (a fixed random UUID).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d3e_1a52_8c1f_4b7e_9a04_52c6_b8f1_d2a7);
    let mut name = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for part in parts {
        name.extend_from_slice(&(part.len() as u64).to_be_bytes());
        name.extend_from_slice(part);
    }
    uuid::Uuid::new_v5(&NAMESPACE, &name).to_string()
}

/// The headers an application set: without merit's `x-merit-*` and the broker's
/// delivery bookkeeping (`x-delivery-count`, `x-death`, …).
pub(crate) fn application_headers(headers: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(k, _)| {
            !(k.starts_with("x-merit-")
                || k.as_str() == "x-delivery-count"
                || k.as_str() == "x-death"
                || k.starts_with("x-first-death-")
                || k.starts_with("x-last-death-"))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `t` as RFC 3339 UTC with milliseconds, e.g. `2026-11-03T09:15:02.123Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_000 + 3_723_456);
        assert_eq!(rfc3339(t), "2000-02-29T01:02:03.456Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599);
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
    }

    #[test]
    fn wire_headers_round_trip() {
        let draft = Draft {
            routing_key: "nft.burned".into(),
            body: Bytes::from_static(b"{}"),
            headers: [
                ("merit-nft".to_string(), "7".to_string()),
                ("x-delivery-count".to_string(), "2".to_string()),
            ]
            .into(),
            message_id: Some("m-1".into()),
            correlation_id: Some("c-1".into()),
            source_queue: "merit.nft.0".into(),
            origin: Origin::Merit,
        };
        let dl = DeadLetter::from_draft(draft, &DeadLetterReason::new("handler_error", "boom", 3));
        assert!(!dl.headers.contains_key("x-delivery-count"));
        let back = DeadLetter::from_wire(
            dl.id.clone(),
            dl.body.clone(),
            dl.correlation_id.clone(),
            &dl.wire_headers(),
        );
        assert_eq!(back, dl);
        let out = back.replay_message();
        assert_eq!(out.routing_key, "nft.burned");
        assert_eq!(out.message_id, "m-1");
        assert_eq!(out.headers.get("merit-nft").map(String::as_str), Some("7"));
        assert_eq!(out.headers.get(REPLAY_OF), Some(&dl.id));
        assert_eq!(out.headers.len(), 2);
        assert_eq!(
            out.origin,
            Origin::Merit,
            "replayed through the door it came by"
        );
    }

    #[test]
    fn a_producer_cannot_choose_its_replay_door_and_huge_bodies_are_cut() {
        let draft = Draft {
            routing_key: "user.holdings.changed".into(),
            body: Bytes::from(vec![b'x'; MAX_DEAD_LETTER_BODY + 10]),
            // A producer's own attempt at merit's headers is dropped with the rest.
            headers: [(ORIGIN.to_string(), "merit".to_string())].into(),
            message_id: None,
            correlation_id: None,
            source_queue: "merit.unrouted".into(),
            origin: Origin::Producer,
        };
        let dl = DeadLetter::from_draft(draft, &DeadLetterReason::new("forbidden_type", "no", 0));
        assert_eq!(dl.body.len(), MAX_DEAD_LETTER_BODY);
        assert_eq!(dl.truncated_from, Some(MAX_DEAD_LETTER_BODY + 10));
        let back = DeadLetter::from_wire(dl.id.clone(), dl.body.clone(), None, &dl.wire_headers());
        assert_eq!(back.origin, Origin::Producer);
        assert_eq!(back.truncated_from, Some(MAX_DEAD_LETTER_BODY + 10));
        assert_eq!(back.replay_message().origin, Origin::Producer);
    }

    fn draft(body: &'static [u8], headers: BTreeMap<String, String>) -> Draft {
        Draft {
            routing_key: "governance.vote.cast".into(),
            body: Bytes::from_static(body),
            headers,
            message_id: Some("m-1".into()),
            correlation_id: None,
            source_queue: "merit.proposal.0".into(),
            origin: Origin::Producer,
        }
    }

    #[test]
    fn one_delivery_dead_lettered_twice_is_one_dead_letter_and_its_replay_another() {
        let reason = DeadLetterReason::new("handler_error", "boom", 3);
        let first = DeadLetter::from_draft(draft(b"{}", BTreeMap::new()), &reason);
        let again = DeadLetter::from_draft(draft(b"{}", BTreeMap::new()), &reason);
        assert_eq!(first.id, again.id, "a redelivery dead-lettered again");
        let other = DeadLetter::from_draft(draft(b"{ }", BTreeMap::new()), &reason);
        assert_ne!(first.id, other.id, "another body");
        let refused = DeadLetterReason::new("type_mismatch", "no", 0);
        let refused = DeadLetter::from_draft(draft(b"{}", BTreeMap::new()), &refused);
        assert_ne!(first.id, refused.id, "another reason");
        // The replay fails again: a new dead letter, the same one however often the replay
        // was published.
        let replayed = first.replay_message().headers;
        let second = DeadLetter::from_draft(draft(b"{}", replayed.clone()), &reason);
        assert_ne!(second.id, first.id);
        assert_eq!(
            DeadLetter::from_draft(draft(b"{}", replayed), &reason).id,
            second.id
        );
        assert!(
            !second.headers.contains_key(REPLAY_OF),
            "kept headers drop x-merit-*"
        );
    }
}
