//! The dead-letter queue on RabbitMQ: `merit.dlx` (fanout) feeding the quorum queue
//! `merit.dlq`. A dead letter is the original message (body, headers, correlation id)
//! with the `x-merit-*` reason headers and a message id derived from what was
//! dead-lettered, which is its id.
//!
//! The queue is a hand-over point: each node's dead-letter recorder consumes it
//! ([`consume`]) and acks a dead letter once it is stored in the database, where
//! operators page, replay and discard. [`peek`] reads what is still queued (not yet
//! recorded): it takes messages with `basic.get` (manual ack) on a private channel and
//! closes the channel without acking, which returns them all to the queue, in order.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use lapin::{options::BasicGetOptions, Channel};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{
    consumer::{self, Incoming},
    fields,
    link::Shared,
    publisher::{publish_confirmed, Prepared},
};
use crate::{
    deadletter::{dead_letter_id, DeadLetter, DeadLetterDelivery, DeadLetterReason, Draft},
    error::{Error, Result},
    outgoing::Outgoing,
};

/// Publishes a dead letter for `draft` and waits for its confirm; returns its id.
pub(crate) async fn publish_dead_letter(
    shared: &Shared,
    draft: Draft,
    reason: &DeadLetterReason,
) -> Result<String> {
    let dl = DeadLetter::from_draft(draft, reason);
    let msg = Outgoing {
        routing_key: dl.routing_key.clone(),
        body: dl.body.clone(),
        message_id: dl.id.clone(),
        correlation_id: dl.correlation_id.clone(),
        headers: dl.wire_headers(),
        origin: merit_messages::Origin::Merit,
    };
    let prepared = Prepared::new(&shared.topology.dead_letter_exchange(), &msg)?;
    publish_confirmed(shared, vec![prepared]).await?;
    warn!(
        dead_letter = %dl.id,
        class = %dl.reason_class,
        routing_key = %dl.routing_key,
        source_queue = %dl.source_queue,
        message_id = dl.message_id.as_deref().unwrap_or(""),
        attempts = dl.attempts,
        reason = %dl.reason,
        "dead-lettered"
    );
    Ok(dl.id)
}

/// Up to `limit` dead letters, oldest first, left in the queue.
pub(crate) async fn peek(shared: &Shared, limit: usize) -> Result<Vec<DeadLetter>> {
    let queue = shared.topology.dead_letter_queue();
    shared
        .with_link("peek dead letters", |link| {
            let queue = queue.clone();
            async move {
                let ch = link.channel("peek dead letters").await?;
                let mut found = Vec::new();
                while found.len() < limit {
                    match get(&ch, &queue).await? {
                        Some(delivery) => found.push(to_dead_letter(&delivery)),
                        None => break,
                    }
                }
                give_back(&ch).await;
                Ok(found)
            }
        })
        .await
}

/// Streams the dead-letter queue with at most `prefetch` unacked dead letters.
pub(crate) async fn consume(
    shared: Arc<Shared>,
    prefetch: u16,
) -> Result<mpsc::Receiver<DeadLetterDelivery>> {
    let queue = shared.topology.dead_letter_queue();
    consumer::subscribe(shared, queue, prefetch, |incoming: Incoming| {
        let dead_letter = read(Wire {
            message_id: incoming.message_id,
            correlation_id: incoming.correlation_id,
            headers: incoming.headers,
            death: incoming.death,
            routing_key: incoming.routing_key,
            body: incoming.body,
        });
        DeadLetterDelivery::rabbit(dead_letter, incoming.settler)
    })
    .await
}

async fn get(ch: &Channel, queue: &str) -> Result<Option<lapin::message::Delivery>> {
    ch.basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await
        .map(|m| m.map(|m| m.delivery))
        .map_err(|e| Error::amqp(format!("get from {queue}"), e))
}

/// Closes a scan channel, returning every message it holds unacked to the queue.
async fn give_back(ch: &Channel) {
    if let Err(e) = ch.close(200, "scan done".into()).await {
        debug!(error = %e, "closing a dead-letter scan channel");
    }
}

fn to_dead_letter(d: &lapin::message::Delivery) -> DeadLetter {
    read(Wire {
        message_id: d.properties.message_id().as_ref().map(|m| m.to_string()),
        correlation_id: d
            .properties
            .correlation_id()
            .as_ref()
            .map(|c| c.to_string()),
        headers: fields::headers(&d.properties),
        death: latest_death(&d.properties),
        routing_key: d.routing_key.to_string(),
        body: Bytes::from(d.data.clone()),
    })
}

/// A message read from the dead-letter queue.
struct Wire {
    message_id: Option<String>,
    correlation_id: Option<String>,
    headers: BTreeMap<String, String>,
    death: Option<Death>,
    routing_key: String,
    body: Bytes,
}

/// The dead letter a DLQ message holds. One merit made has its id as message id; one the
/// broker made (a shard queue's delivery limit) keeps the original message's id, so its
/// id is derived from the queue, that id, the body and how often the broker dead-lettered
/// it: unique per dead-lettering, the same when the queue hands it out twice.
fn read(mut wire: Wire) -> DeadLetter {
    let id = match &wire.death {
        Some(death) => {
            let id = dead_letter_id(&[
                b"broker",
                death.queue.as_bytes(),
                wire.message_id.as_deref().unwrap_or("").as_bytes(),
                &wire.body,
                &death.count.to_be_bytes(),
            ]);
            broker_made(&mut wire.headers, death, &wire.routing_key);
            id
        }
        None => wire.message_id.unwrap_or_default(),
    };
    DeadLetter::from_wire(id, wire.body, wire.correlation_id, &wire.headers)
}

/// The broker's record of the last time it dead-lettered a message: `x-death[0]`.
pub(crate) struct Death {
    queue: String,
    reason: String,
    /// How often the broker dead-lettered it from that queue for that reason.
    count: u64,
}

/// `x-death` is present only on a dead letter the broker made (a shard queue's delivery
/// limit): merit's own dead letters never carry it (it is dropped from the headers they
/// keep). Its first entry names the queue and reason of the latest dead-lettering; the
/// broker writes that entry (or finds and updates one with that same queue and reason),
/// so those two fields are the broker's word even if the message came with an `x-death`
/// of its own.
pub(crate) fn latest_death(props: &lapin::BasicProperties) -> Option<Death> {
    use lapin::types::AMQPValue;
    let text = |v: Option<&AMQPValue>| match v {
        Some(AMQPValue::LongString(s)) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Some(AMQPValue::ShortString(s)) => Some(s.as_str().to_string()),
        _ => None,
    };
    let AMQPValue::FieldArray(deaths) = props.headers().as_ref()?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
        return None;
    };
    Some(Death {
        queue: text(latest.inner().get("queue"))?,
        reason: text(latest.inner().get("reason"))?,
        count: match latest.inner().get("count") {
            Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
            Some(AMQPValue::LongUInt(n)) => u64::from(*n),
            Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        },
    })
}

/// Rewrites the headers of a dead letter the broker made. The broker copied the message's
/// own headers into it, and those are the producer's word: a forged `x-merit-origin:
/// merit` would replay it through merit's door and a forged reason would hide why it
/// stopped the nodes. So every `x-merit-*` header it brought is dropped, the reason comes
/// from `death`, and the origin stays the producer's (a merit event the broker
/// dead-lettered is replayed through the producers' door and refused as `forbidden_type`
/// there, never the other way round).
fn broker_made(
    headers: &mut std::collections::BTreeMap<String, String>,
    death: &Death,
    routing_key: &str,
) {
    use crate::deadletter::{ATTEMPTS, ORIGINAL_ROUTING_KEY, REASON, REASON_CLASS, SOURCE_QUEUE};
    headers.retain(|k, _| !k.starts_with("x-merit-"));
    let queue = merit_messages::quote_untrusted(&death.queue);
    let detail = if death.reason == "delivery_limit" {
        format!(
            "the broker dead-lettered it from {queue}: delivered more often than the queue's \
             delivery limit, without being settled (it likely stops the node that takes it)"
        )
    } else {
        format!(
            "the broker dead-lettered it from {queue} ({})",
            merit_messages::quote_untrusted(&death.reason)
        )
    };
    let attempts = headers.get("x-delivery-count").cloned().unwrap_or_default();
    headers.insert(REASON_CLASS.to_string(), death.reason.clone());
    headers.insert(REASON.to_string(), detail);
    headers.insert(SOURCE_QUEUE.to_string(), death.queue.clone());
    headers.insert(ORIGINAL_ROUTING_KEY.to_string(), routing_key.to_string());
    headers.insert(ATTEMPTS.to_string(), attempts);
}
