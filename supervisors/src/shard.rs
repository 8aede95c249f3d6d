//! Shard consumers: one per (actor kind, shard queue). Each turns deliveries into actor
//! messages, in delivery order, and acks a delivery only after its actor committed it.
//!
//! A delivery that cannot reach an actor is dead-lettered with its reason and never
//! dropped: undecodable (`malformed`, `unknown_type`, `unknown_version`, `invalid_field`,
//! ...), no key for this kind (`missing_key`), or a routing header that disagrees with
//! the payload (`key_mismatch`, which would break per-key order).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use merit_actors::Outcome;
use merit_mailbox::{DeadLetterReason, Delivery, ShardId, Transport};
use merit_messages::Envelope;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::{
    error::{Result, SupervisorError},
    node::Registries,
    ownership::Owned,
};

/// Consumes `shard` while this node owns it (see [`crate::ownership`]), until shutdown
/// (Ok) or until the delivery stream ends (Err, so the supervisor resubscribes).
///
/// A shard this node stops owning, or any shard at shutdown, is handed over: no new
/// delivery is dispatched, the turns already dispatched finish and are acked, the
/// deliveries taken but not dispatched are released, and then the subscription's channel
/// closes, which returns them to the queue ahead of anything newer and makes the next
/// owner (waiting on the queue's single active consumer) active. So the next owner sees
/// each key's messages after every earlier one was committed here.
pub(crate) async fn consume_shard(
    transport: Arc<dyn Transport>,
    shard: ShardId,
    prefetch: u16,
    drain_limit: Duration,
    registries: Arc<Registries>,
    mut owned: watch::Receiver<Owned>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => return Ok(()),
            mine = owned.wait_for(|o| o.contains(shard)) => {
                if mine.is_err() {
                    // The ownership watcher is gone: the node is stopping.
                    return Ok(());
                }
            }
        }
        let mut deliveries = transport.consume(shard, prefetch).await?;
        tracing::info!(%shard, prefetch, "consuming");
        let inflight = Inflight::default();
        let stopping = loop {
            tokio::select! {
                d = deliveries.recv() => match d {
                    Some(delivery) => dispatch(delivery, &registries, &inflight),
                    None => return Err(SupervisorError::ConsumerEnded(shard.to_string())),
                },
                changed = owned.changed() => {
                    if changed.is_err() || !owned.borrow_and_update().contains(shard) {
                        break changed.is_err();
                    }
                }
                _ = shutdown.wait_for(|s| *s) => break true,
            }
        };
        let started = std::time::Instant::now();
        let released = hand_over(deliveries, &inflight, drain_limit).await;
        metrics::counter!("merit_shard_handovers_total", "kind" => shard.kind.as_str())
            .increment(1);
        tracing::info!(%shard, released, drained_ms = started.elapsed().as_millis() as u64,
            stopping, "shard handed over");
        if stopping {
            return Ok(());
        }
    }
}

/// Deliveries of one subscription dispatched and not yet settled.
#[derive(Clone, Default)]
struct Inflight(Arc<Counter>);

#[derive(Default)]
struct Counter {
    count: AtomicUsize,
    /// Woken when `count` drops to zero.
    idle: Notify,
}

impl Inflight {
    /// Runs `settle` (which settles one delivery) as a task, counted until it ends.
    fn track(&self, settle: impl std::future::Future<Output = ()> + Send + 'static) {
        self.0.count.fetch_add(1, Ordering::AcqRel);
        let guard = InflightGuard(self.0.clone());
        tokio::spawn(async move {
            settle.await;
            drop(guard);
        });
    }

    /// Waits until nothing is in flight, or `limit` passed; true if drained.
    async fn drained(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self.0.idle.notified();
            if self.0.count.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.0.count.load(Ordering::Acquire) == 0;
            }
        }
    }
}

/// Counts one dispatched delivery until it is settled (dropped after its ack).
struct InflightGuard(Arc<Counter>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Stops dispatching `deliveries`, waits for the dispatched ones to be settled, releases
/// the rest and lets the subscription go (see [`consume_shard`]). Returns how many
/// deliveries were released undispatched.
async fn hand_over(
    mut deliveries: mpsc::Receiver<Delivery>,
    inflight: &Inflight,
    drain_limit: Duration,
) -> usize {
    deliveries.close();
    let mut released = 0;
    while let Ok(delivery) = deliveries.try_recv() {
        delivery.release();
        released += 1;
    }
    if !inflight.drained(drain_limit).await {
        tracing::warn!(
            "turns still running after {drain_limit:?}; letting the shard go, their \
             deliveries come again to the next owner"
        );
    }
    drop(deliveries);
    released
}

/// Routes a delivery to its actor, or dead-letters it if it cannot reach one.
fn dispatch(delivery: Delivery, registries: &Registries, inflight: &Inflight) {
    let attempts = delivery.delivery_count + 1;
    let admitted = decode(&delivery, registries, attempts).and_then(|envelope| {
        let key = actor_key(&delivery, &envelope, attempts)?;
        Ok((envelope, key))
    });
    let (envelope, key) = match admitted {
        Ok(admitted) => admitted,
        Err(reason) => return inflight.track(dead_letter(delivery, reason)),
    };
    let kind = delivery.shard.kind;
    // The delivery's span lasts until its actor answers; a producer's (or merit's own)
    // `traceparent` makes it part of that trace. DEBUG: made only when traced.
    let span = tracing::debug_span!(
        "merit.delivery",
        kind = kind.as_str(),
        event_type = envelope.event_type().as_str(),
        event_id = %envelope.id,
        correlation_id = %envelope.correlation_id,
    );
    merit_messages::trace::follow(&span, &delivery.headers);
    let outcome = registries.route(kind, key, Arc::new(envelope), delivery.delivery_count, span);
    let pulse = registries.pulse.clone();
    inflight.track(complete(
        delivery,
        outcome,
        std::time::Instant::now(),
        pulse,
    ));
}

/// What a check of a delivery found, or why the delivery is dead-lettered.
type Admitted<T> = std::result::Result<T, DeadLetterReason>;

/// The delivery's envelope (counted in), or why it cannot be decoded.
fn decode(delivery: &Delivery, registries: &Registries, attempts: u32) -> Admitted<Envelope> {
    let kind = delivery.shard.kind;
    match Envelope::decode(&delivery.body) {
        Ok(env) => {
            registries.pulse.event_in(env.event_type());
            metrics::counter!(
                "merit_events_in_total",
                "kind" => kind.as_str(),
                "type" => env.event_type().as_str()
            )
            .increment(1);
            Ok(env)
        }
        Err(e) => Err(DeadLetterReason {
            class: e.kind.as_str().to_string(),
            detail: e.to_string(),
            attempts,
        }),
    }
}

/// The key of the actor (of the shard's kind) `envelope` goes to, or why it must not go
/// to one.
fn actor_key(delivery: &Delivery, envelope: &Envelope, attempts: u32) -> Admitted<String> {
    let kind = delivery.shard.kind;
    let refuse = |class: &str, detail: String| DeadLetterReason {
        class: class.to_string(),
        detail,
        attempts,
    };
    // The routing key chose the shard (and so the actor kinds that see it): a body of
    // another type would reach actors that were never meant to apply it.
    if delivery.routing_key != envelope.event_type().as_str() {
        let detail = format!(
            "type: the envelope is {} but it was published with routing key {}",
            envelope.event_type(),
            merit_messages::quote_untrusted(&delivery.routing_key)
        );
        return Err(refuse("type_mismatch", detail));
    }
    // The broker already keeps merit's types off the producers' exchange; this holds the
    // same line for any transport or topology that does not.
    if delivery.origin == merit_messages::Origin::Producer
        && envelope.event_type().origin() == merit_messages::Origin::Merit
    {
        let mut reason = merit_mailbox::forbidden(envelope.event_type());
        reason.attempts = attempts;
        return Err(reason);
    }
    let Some(key) = envelope.keys.key_for(kind) else {
        let detail = format!("{} carries no {kind} key", envelope.event_type());
        return Err(refuse("missing_key", detail));
    };
    match delivery.routing_key_for(kind) {
        None => {
            let detail = format!("header {} is missing or empty", kind.header());
            Err(refuse("missing_key", detail))
        }
        Some(header) if header != key.as_str() => {
            let detail = format!(
                "header {} is {:?} but the payload addresses {key:?}",
                kind.header(),
                Some(header)
            );
            Err(refuse("key_mismatch", detail))
        }
        Some(_) => Ok(key),
    }
}

/// Settles a delivery once its actor answered, recording how long the turn took from
/// dispatch to outcome (queueing behind the key's earlier messages included).
async fn complete(
    delivery: Delivery,
    outcome: oneshot::Receiver<Outcome>,
    dispatched: std::time::Instant,
    pulse: Arc<crate::pulse::Pulse>,
) {
    let outcome = outcome.await;
    let elapsed = dispatched.elapsed();
    pulse.turn(delivery.shard.kind, elapsed);
    metrics::histogram!("merit_handler_seconds", "kind" => delivery.shard.kind.as_str())
        .record(elapsed.as_secs_f64());
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
