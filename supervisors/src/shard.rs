//! Shard consumers: one per (actor kind, shard queue). Each turns deliveries into actor
//! messages, in delivery order, and acks a delivery only after its actor committed it.
//!
//! A delivery that cannot reach an actor is dead-lettered with its reason and never
//! dropped: undecodable (`malformed`, `unknown_type`, `unknown_version`, `invalid_field`,
//! ...), no key for this kind (`missing_key`), or a routing header that disagrees with
//! the payload (`key_mismatch`, which would break per-key order).

use std::sync::Arc;

use merit_actors::Outcome;
use merit_mailbox::{DeadLetterReason, Delivery, ShardId, Transport};
use merit_messages::Envelope;
use tokio::sync::{oneshot, watch};

use crate::{
    error::{Result, SupervisorError},
    node::Registries,
};

/// Consumes `shard` until shutdown (Ok) or until the delivery stream ends (Err, so the
/// supervisor resubscribes).
pub(crate) async fn consume_shard(
    transport: Arc<dyn Transport>,
    shard: ShardId,
    prefetch: u16,
    registries: Arc<Registries>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut deliveries = transport.consume(shard, prefetch).await?;
    tracing::info!(%shard, prefetch, "consuming");
    loop {
        let delivery = tokio::select! {
            d = deliveries.recv() => d,
            _ = shutdown.changed() => return Ok(()),
        };
        match delivery {
            Some(delivery) => dispatch(delivery, &registries),
            None => return Err(SupervisorError::ConsumerEnded(shard.to_string())),
        }
    }
}

fn dispatch(delivery: Delivery, registries: &Registries) {
    let kind = delivery.shard.kind;
    let attempts = delivery.delivery_count + 1;
    let envelope = match Envelope::decode(&delivery.body) {
        Ok(env) => {
            metrics::counter!(
                "merit_events_in_total",
                "kind" => kind.as_str(),
                "type" => env.event_type().as_str()
            )
            .increment(1);
            env
        }
        Err(e) => {
            let reason = DeadLetterReason {
                class: e.kind.as_str().to_string(),
                detail: e.to_string(),
                attempts,
            };
            tokio::spawn(dead_letter(delivery, reason));
            return;
        }
    };
    // The routing key chose the shard (and so the actor kinds that see it): a body of
    // another type would reach actors that were never meant to apply it.
    if delivery.routing_key != envelope.event_type().as_str() {
        let reason = DeadLetterReason {
            class: "type_mismatch".to_string(),
            detail: format!(
                "type: the envelope is {} but it was published with routing key {}",
                envelope.event_type(),
                merit_messages::quote_untrusted(&delivery.routing_key)
            ),
            attempts,
        };
        tokio::spawn(dead_letter(delivery, reason));
        return;
    }
    // The broker already keeps merit's types off the producers' exchange; this holds the
    // same line for any transport or topology that does not.
    if delivery.origin == merit_messages::Origin::Producer
        && envelope.event_type().origin() == merit_messages::Origin::Merit
    {
        let mut reason = merit_mailbox::forbidden(envelope.event_type());
        reason.attempts = attempts;
        tokio::spawn(dead_letter(delivery, reason));
        return;
    }
    let Some(key) = envelope.keys.key_for(kind) else {
        let reason = DeadLetterReason {
            class: "missing_key".to_string(),
            detail: format!("{} carries no {kind} key", envelope.event_type()),
            attempts,
        };
        tokio::spawn(dead_letter(delivery, reason));
        return;
    };
    if delivery.routing_key_for(kind).is_none() {
        let reason = DeadLetterReason {
            class: "missing_key".to_string(),
            detail: format!("header {} is missing or empty", kind.header()),
            attempts,
        };
        tokio::spawn(dead_letter(delivery, reason));
        return;
    }
    if delivery.routing_key_for(kind) != Some(key.as_str()) {
        let reason = DeadLetterReason {
            class: "key_mismatch".to_string(),
            detail: format!(
                "header {} is {:?} but the payload addresses {key:?}",
                kind.header(),
                delivery.routing_key_for(kind)
            ),
            attempts,
        };
        tokio::spawn(dead_letter(delivery, reason));
        return;
    }
    let outcome = registries.route(kind, key, Arc::new(envelope), delivery.delivery_count);
    tokio::spawn(complete(delivery, outcome, std::time::Instant::now()));
}

/// Settles a delivery once its actor answered, recording how long the turn took from
/// dispatch to outcome (queueing behind the key's earlier messages included).
async fn complete(
    delivery: Delivery,
    outcome: oneshot::Receiver<Outcome>,
    dispatched: std::time::Instant,
) {
    let outcome = outcome.await;
    metrics::histogram!("merit_handler_seconds", "kind" => delivery.shard.kind.as_str())
        .record(dispatched.elapsed().as_secs_f64());
    let result = match outcome {
        Ok(Outcome::Applied(_) | Outcome::Duplicate) => delivery.ack().await,
        Ok(Outcome::DeadLetter { reason, attempts }) => {
            metrics::counter!("merit_dead_letters_total", "class" => "handler_error").increment(1);
            delivery
                .dead_letter(&DeadLetterReason {
                    class: "handler_error".to_string(),
                    detail: reason,
                    attempts,
                })
                .await
        }
        // The actor went away without answering (node stopping): let the broker redeliver.
        Err(_) => delivery.requeue().await,
    };
    if let Err(e) = result {
        // The broker redelivers what it did not see acked; the inbox absorbs the repeat.
        tracing::warn!(error = %e, "could not settle a delivery; it will be redelivered");
    }
}

async fn dead_letter(delivery: Delivery, reason: DeadLetterReason) {
    metrics::counter!("merit_dead_letters_total", "class" => reason.class.clone()).increment(1);
    tracing::warn!(class = %reason.class, detail = %reason.detail, "dead-lettering an undeliverable message");
    if let Err(e) = delivery.dead_letter(&reason).await {
        tracing::warn!(error = %e, "could not dead-letter; it will be redelivered");
    }
}
