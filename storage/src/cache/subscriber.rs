//! The invalidation subscriber: one task per node that listens on `{prefix}invalidate`,
//! drops the named keys from L1, and owns the "is Redis up" mark.
//!
//! The loop: connect and SUBSCRIBE → **clear the whole L1** → mark Redis up → replay the
//! writes deferred while it was down → apply messages, pinging every [`PING_INTERVAL`] (and
//! whenever a data operation failed) → on any failure mark Redis down and start again after
//! a backoff.
//!
//! Why clear L1 on every (re)subscription: Redis pub/sub delivers only to live
//! subscribers, so while this node was not subscribed it may have missed invalidations and
//! its L1 may hold values other nodes have since overwritten. Nothing tells us which keys,
//! so all go. A fill that started before the clear cannot land after it (the clear
//! advances the L1 epoch). While unsubscribed, L1 entries are bounded by the ttl.

use merit_messages::{Backoff, Retrying};
use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::oneshot;

use super::{
    l2::{Invalidation, L2, OP_TIMEOUT},
    stats::Counters,
    CacheKey, Core,
};

/// How often a quiet subscription is checked (PING on both connections).
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Longest wait for a new connection plus its SUBSCRIBE.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Reconnect backoff: doubles from 100 ms to 2 s after each failed attempt.
const BACKOFF: Backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(2));

/// Runs until aborted (when the last handle of the cache is dropped). `first_attempt` is
/// answered after the first connection attempt, whatever its outcome.
pub(crate) async fn run(core: Arc<Core>, first_attempt: oneshot::Sender<()>) {
    let Some(l2) = core.l2.as_ref() else {
        return;
    };
    let _guard = DownIfPanicking(l2);
    let mut first_attempt = Some(first_attempt);
    let mut retrying = Retrying::new(BACKOFF);
    loop {
        match connect(l2).await {
            Ok((sink, stream)) => {
                core.l1.clear();
                Counters::bump(&core.stats.l1_clears);
                l2.health.mark_up(&l2.node_id);
                if let Some(tx) = first_attempt.take() {
                    let _ = tx.send(());
                }
                retrying.reset();
                let reason = listen(&core, l2, sink, stream).await;
                l2.health.mark_down(&l2.node_id, &reason);
            }
            Err(reason) => {
                l2.health.mark_down(&l2.node_id, &reason);
                if let Some(tx) = first_attempt.take() {
                    let _ = tx.send(());
                }
            }
        }
        tokio::time::sleep(retrying.next_delay()).await;
    }
}

/// Without this task nobody applies invalidations, so Redis must not stay marked up if it
/// panics (an abort, when the cache is dropped, is not a panic and logs nothing).
struct DownIfPanicking<'a>(&'a L2);

impl Drop for DownIfPanicking<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .health
                .mark_down(&self.0.node_id, "the invalidation subscriber panicked");
        }
    }
}

/// A fresh subscription, once both it and the data connection answer.
async fn connect(l2: &L2) -> Result<(PubSubSink, PubSubStream), String> {
    let subscribe = async {
        let mut pubsub = l2.client.get_async_pubsub().await?;
        pubsub.subscribe(&l2.channel).await?;
        redis::RedisResult::Ok(pubsub.split())
    };
    let subscription = match tokio::time::timeout(CONNECT_TIMEOUT, subscribe).await {
        Ok(Ok(subscription)) => subscription,
        Ok(Err(e)) => return Err(format!("subscribe to {}: {e}", l2.channel)),
        Err(_) => {
            return Err(format!(
                "subscribe to {}: no answer within {CONNECT_TIMEOUT:?}",
                l2.channel
            ))
        }
    };
    // The data connection may still hold the broken connection from before; its first
    // command after an outage fails and triggers its reconnect, so allow one retry.
    if let Err(first) = l2.ping().await {
        l2.ping()
            .await
            .map_err(|e| format!("data connection: {e} (after {first})"))?;
    }
    Ok(subscription)
}

/// Applies messages until the subscription fails; returns why.
async fn listen(core: &Core, l2: &L2, mut sink: PubSubSink, mut stream: PubSubStream) -> String {
    let mut ticker = tokio::time::interval(PING_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => apply(core, l2, message.get_payload_bytes()).await,
                None => return "the invalidation subscription was closed".to_string(),
            },
            _ = ticker.tick() => {
                if let Err(reason) = check(core, l2, &mut sink).await {
                    return reason;
                }
            }
            () = l2.probe.notified() => {
                if let Err(reason) = check(core, l2, &mut sink).await {
                    return reason;
                }
            }
        }
    }
}

/// Both connections answer, and writes deferred while Redis was unreachable are replayed.
async fn check(core: &Core, l2: &L2, sink: &mut PubSubSink) -> Result<(), String> {
    match tokio::time::timeout(OP_TIMEOUT, sink.ping::<redis::Value>()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("invalidation subscription: {e}")),
        Err(_) => {
            return Err(format!(
                "invalidation subscription: no answer within {OP_TIMEOUT:?}"
            ))
        }
    }
    l2.ping()
        .await
        .map_err(|e| format!("data connection: {e}"))?;
    match l2.replay().await {
        Ok(sent) => {
            core.stats
                .invalidations_sent
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        Err((sent, e)) => {
            core.stats
                .invalidations_sent
                .fetch_add(sent, std::sync::atomic::Ordering::Relaxed);
            Counters::bump(&core.stats.l2_errors);
            Err(format!("replaying deferred writes: {e}"))
        }
    }
}

/// Drops the keys another node wrote. A message this build cannot read exactly (bad JSON,
/// a key kind it does not know) clears all of L1: too much is safe, too little is not.
async fn apply(core: &Core, l2: &L2, payload: &[u8]) {
    let message: Invalidation = match serde_json::from_slice(payload) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(
                node = %l2.node_id,
                error = %e,
                "unreadable invalidation message: clearing L1"
            );
            clear(core);
            return;
        }
    };
    if message.instance == l2.instance {
        return;
    }
    let keys: Result<Vec<CacheKey>, _> = message.keys.iter().map(|k| k.parse()).collect();
    match keys {
        Ok(keys) => {
            for key in &keys {
                core.l1.remove(key).await;
            }
            tracing::debug!(
                node = %l2.node_id,
                from = %message.node,
                keys = keys.len(),
                "applied invalidation"
            );
        }
        Err(unknown) => {
            tracing::warn!(
                node = %l2.node_id,
                from = %message.node,
                key = %unknown.0,
                "invalidation names a key kind this node does not know: clearing L1"
            );
            clear(core);
        }
    }
    Counters::bump(&core.stats.invalidations_received);
}

fn clear(core: &Core) {
    core.l1.clear();
    Counters::bump(&core.stats.l1_clears);
}
