//! The unrouted mover: drains `merit.unrouted` into the dead-letter queue with a reason.
//!
//! Messages arrive there through alternate exchanges: from `merit.events` when no binding
//! matches the routing key (unknown type), and from a kind's gate when the kind's key
//! header is absent. Each is classified with [`crate::routing::classify`] —
//! `unknown_type`, `missing_key`, or `unrouted` if it looks routable — published to the
//! DLQ with a confirm, and only then acked. A known type that no actor kind handles
//! (`config.changed`, `user.benefits.changed`) also lands here when no other queue is
//! bound to it; that is a broadcast nobody listened to, not a fault, so it is acked and
//! logged instead. The queue has a single active consumer, so one node moves at a time.

use std::{future::Future, sync::Arc};

use tracing::{info, warn};

use super::{
    consumer::{self, Incoming},
    link::Shared,
};
use crate::{error::Result, routing};

/// Unacked messages the mover holds at once.
const PREFETCH: u16 = 32;

/// Moves unrouted messages until `shutdown` resolves. Resubscribes after a cancelled
/// consumer; returns `Err` if the queue cannot be consumed (topology not declared) or the
/// transport closes.
pub(crate) async fn run(shared: Arc<Shared>, shutdown: impl Future<Output = ()>) -> Result<()> {
    tokio::pin!(shutdown);
    let queue = shared.topology.unrouted();
    loop {
        let mut rx = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            rx = consumer::subscribe(shared.clone(), queue.clone(), PREFETCH, |i| i) => rx?,
        };
        loop {
            let next = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                next = rx.recv() => next,
            };
            match next {
                Some(incoming) => move_one(incoming).await,
                None => break,
            }
        }
    }
}

async fn move_one(msg: Incoming) {
    let Some(reason) = routing::classify(&msg.routing_key, &msg.headers, msg.origin) else {
        info!(routing_key = %msg.routing_key, "no queue is bound to this broadcast event; dropping it");
        if let Err(e) = msg.settler.ack().await {
            warn!(error = %e, "acking a dropped broadcast failed; it will be seen again");
        }
        return;
    };
    let routing_key = msg.routing_key.clone();
    if let Err(e) = msg.dead_letter(&reason).await {
        // The message was requeued: it stays in merit.unrouted and is retried.
        warn!(%routing_key, class = %reason.class, error = %e,
            "could not move an unrouted message to the DLQ; it stays queued");
    }
}
