//! The dead-letter queue on RabbitMQ: `merit.dlx` (fanout) feeding the quorum queue
//! `merit.dlq`. A dead letter is the original message (body, headers, correlation id)
//! with the `x-merit-*` reason headers and a fresh message id, which is its id.
//!
//! Peeking: AMQP has no "browse", so [`peek`] takes messages with `basic.get` (manual ack)
//! on a private channel and then closes the channel without acking, which returns them
//! all to the queue at once, in order. Replay and discard scan the same way until they
//! find the id, then ack that one message (after the replay is confirmed) and close the
//! channel. While a scan holds messages, a concurrent peek or scan on another node does
//! not see them; each operation is short, and an admin can simply retry.

use bytes::Bytes;
use lapin::{options::BasicAckOptions, options::BasicGetOptions, Channel};
use tracing::{debug, info, warn};

use super::{
    fields,
    link::{Link, Shared},
    publisher::{publish_confirmed, Prepared},
};
use crate::{
    deadletter::{DeadLetter, DeadLetterReason, Draft},
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

/// What to do with the dead letter a scan finds.
#[derive(Clone, Copy)]
pub(crate) enum Take {
    Replay,
    Discard,
}

/// Finds dead letter `id`; replays it (with confirm) or not, then removes it.
pub(crate) async fn take(shared: &Shared, id: &str, action: Take) -> Result<bool> {
    let queue = shared.topology.dead_letter_queue();
    let operation = match action {
        Take::Replay => format!("replay dead letter {id}"),
        Take::Discard => format!("discard dead letter {id}"),
    };
    shared
        .with_link(&operation, |link| {
            let queue = queue.clone();
            async move {
                let ch = link.channel("scan dead letters").await?;
                let result = scan(shared, &link, &ch, &queue, id, action).await;
                give_back(&ch).await;
                result
            }
        })
        .await
}

async fn scan(
    shared: &Shared,
    link: &Link,
    ch: &Channel,
    queue: &str,
    id: &str,
    action: Take,
) -> Result<bool> {
    while let Some(delivery) = get(ch, queue).await? {
        if delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str())
            != Some(id)
        {
            continue;
        }
        let dl = to_dead_letter(&delivery);
        if let Take::Replay = action {
            // Back through the door it came in by: a producer's message that was refused
            // as merit's own type is refused again, never laundered onto merit's exchange.
            let replay =
                Prepared::new(&shared.topology.exchange_for(dl.origin), &dl.to_outgoing())?;
            publish_confirmed(shared, vec![replay]).await?;
        }
        delivery
            .acker
            .ack(BasicAckOptions { multiple: false })
            .await
            .map_err(|e| Error::amqp(format!("remove dead letter {id}"), e))?;
        match action {
            Take::Replay => info!(dead_letter = id, routing_key = %dl.routing_key,
                generation = link.generation, "replayed dead letter"),
            Take::Discard => info!(dead_letter = id, routing_key = %dl.routing_key,
                "discarded dead letter"),
        }
        return Ok(true);
    }
    Ok(false)
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
    let mut headers = fields::headers(&d.properties);
    if let Some(death) = latest_death(&d.properties) {
        broker_made(&mut headers, &death, d.routing_key.as_str());
    }
    let id = d
        .properties
        .message_id()
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    let correlation_id = d
        .properties
        .correlation_id()
        .as_ref()
        .map(|c| c.to_string());
    DeadLetter::from_wire(id, Bytes::from(d.data.clone()), correlation_id, &headers)
}

/// The broker's record of the last time it dead-lettered a message: `x-death[0]`.
struct Death {
    queue: String,
    reason: String,
}

/// `x-death` is present only on a dead letter the broker made (a shard queue's delivery
/// limit): merit's own dead letters never carry it (it is dropped from the headers they
/// keep). Its first entry names the queue and reason of the latest dead-lettering; the
/// broker writes that entry (or finds and updates one with that same queue and reason),
/// so those two fields are the broker's word even if the message came with an `x-death`
/// of its own.
fn latest_death(props: &lapin::BasicProperties) -> Option<Death> {
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
