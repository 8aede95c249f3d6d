//! The in-process transport: the same mailbox semantics as RabbitMQ inside one process,
//! for `merit demo`, embedded use and tests.
//!
//! Flow: `publish` routes each message with [`crate::routing::route`] (topic by event
//! type, shard by [`shard_for`] of the kind's key) and appends it to its shards, or
//! dead-letters it at once when no mailbox can take it (`unknown_type`, `missing_key`).
//! Each shard hands messages, in order, to its active consumer through a bounded channel,
//! at most `prefetch` unacked at a time. `ack` forgets a message; `requeue` and a dropped
//! receiver put messages back at the head of the shard (see [`shard`]); a second
//! consumer of the same shard waits until the first is gone, as with single active
//! consumer. Nothing survives the process: this transport is not durable.

mod shard;

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use self::shard::{Msg, Shard, Slot};
use crate::{
    deadletter::{DeadLetter, DeadLetterDelivery, DeadLetterReason, Draft},
    delivery::{self, Delivery},
    error::{Error, Result},
    outgoing::Outgoing,
    routing::{classify, route, shard_for, Route, ShardId},
    topology::Topology,
    transport::Transport,
};

/// Mailboxes in memory. Cheap to clone; clones share the queues.
#[derive(Clone)]
pub struct InProcessTransport {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    topology: Topology,
    state: Mutex<State>,
    /// Woken when a dead letter is stored.
    dead_added: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    shards: HashMap<ShardId, Shard>,
    /// Dead letters not yet acked by a recorder, oldest first, each with its arrival
    /// number.
    dead: Vec<(u64, DeadLetter)>,
    next_dead: u64,
    next_consumer: u64,
}

impl InProcessTransport {
    /// An empty transport for `topology` (a shard count of 0 is taken as 1).
    pub fn new(mut topology: Topology) -> Self {
        topology.shards = topology.shards.max(1);
        Self {
            inner: Arc::new(Inner {
                topology,
                state: Mutex::new(State::default()),
                dead_added: tokio::sync::Notify::new(),
            }),
        }
    }

    /// The topology whose names `queue_depths` reports.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Routes one message: into its shards, or to the dead letters with a reason.
    fn route_one(&self, state: &mut State, msg: Outgoing, touched: &mut BTreeSet<ShardId>) {
        let reason = classify(&msg.routing_key, &msg.headers, msg.origin);
        let queued = Msg {
            routing_key: msg.routing_key.clone(),
            body: msg.body.clone(),
            headers: msg.headers.clone(),
            message_id: Some(msg.message_id.clone()),
            correlation_id: msg.correlation_id.clone(),
            redelivered: false,
            delivery_count: 0,
            origin: msg.origin,
        };
        match route(&msg.routing_key, &msg.headers, msg.origin) {
            Route::NoHandlers => {
                debug!(routing_key = %msg.routing_key, "no mailbox handles this broadcast event");
                return;
            }
            Route::UnknownType | Route::Forbidden(_) => {}
            Route::Actors { targets, .. } => {
                for (kind, key) in targets {
                    let shard = ShardId::new(kind, shard_for(&key, self.topology.shards));
                    state.shards.entry(shard).or_default().push(queued.clone());
                    touched.insert(shard);
                }
            }
        }
        if let Some(reason) = reason.filter(|r| r.class != DeadLetterReason::UNROUTED) {
            let draft = Draft {
                routing_key: msg.routing_key,
                body: msg.body,
                headers: msg.headers,
                message_id: Some(msg.message_id),
                correlation_id: msg.correlation_id,
                source_queue: self.topology.unrouted(),
                origin: msg.origin,
            };
            self.store_dead_letter(state, draft, &reason);
        }
    }

    /// Hands ready messages of `shard` to its active consumer while it has room.
    fn pump(self: &Arc<Self>, state: &mut State, shard_id: ShardId) {
        let Some(shard) = state.shards.get_mut(&shard_id) else {
            return;
        };
        while let Some(slot) = shard.active_with_room() {
            let (consumer, tx) = (slot.id, slot.tx.clone());
            let Some((seq, msg)) = shard.start_next() else {
                return;
            };
            let delivery = Delivery {
                shard: shard_id,
                body: msg.body,
                routing_key: msg.routing_key,
                headers: msg.headers,
                message_id: msg.message_id,
                correlation_id: msg.correlation_id,
                redelivered: msg.redelivered,
                delivery_count: msg.delivery_count,
                origin: msg.origin,
                settler: delivery::Settler::InProcess(Settler {
                    inner: self.clone(),
                    shard: shard_id,
                    seq,
                    consumer,
                    settled: false,
                }),
            };
            if let Err(e) = tx.try_send(delivery) {
                // Full cannot happen (capacity = prefetch ≥ in flight); Closed means the
                // receiver is gone: take the message back and retire the consumer.
                let mut undelivered = match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                };
                if let delivery::Settler::InProcess(s) = &mut undelivered.settler {
                    s.settled = true;
                }
                shard.unstart(seq);
                shard.retire(consumer);
            }
        }
    }

    fn settle(self: &Arc<Self>, s: &Settler, how: Settle) {
        let mut state = self.lock();
        let Some(shard) = state.shards.get_mut(&s.shard) else {
            return;
        };
        if let Settle::Dropped = how {
            if shard.active_is_gone(s.consumer) {
                // The receiver was dropped with this delivery in it: return everything
                // the consumer held, in order, now.
                shard.retire(s.consumer);
                self.pump(&mut state, s.shard);
                return;
            }
        }
        let Some(msg) = shard.finish(s.seq, s.consumer) else {
            debug!(shard = %s.shard, ?how, "delivery of a departed consumer: already returned");
            return;
        };
        match how {
            Settle::Ack => {}
            Settle::Requeue | Settle::Dropped => shard.put_back(s.seq, msg),
            Settle::DeadLetter(dead) => self.store_dead_letter(&mut state, dead.0, &dead.1),
        }
        self.pump(&mut state, s.shard);
    }

    fn retire(self: &Arc<Self>, shard: ShardId, consumer: u64) {
        let mut state = self.lock();
        if let Some(s) = state.shards.get_mut(&shard) {
            if s.retire(consumer) {
                debug!(%shard, consumer, "consumer gone; its unacked messages are back at the head");
            }
        }
        self.pump(&mut state, shard);
    }
}

impl Inner {
    /// Stores a dead letter (once per id) and wakes the recorder.
    fn store_dead_letter(&self, state: &mut State, draft: Draft, reason: &DeadLetterReason) {
        let dl = DeadLetter::from_draft(draft, reason);
        warn!(
            dead_letter = %dl.id,
            class = %dl.reason_class,
            routing_key = %dl.routing_key,
            source_queue = %dl.source_queue,
            attempts = dl.attempts,
            reason = %dl.reason,
            "dead-lettered"
        );
        if state.dead.iter().any(|(_, d)| d.id == dl.id) {
            return;
        }
        state.next_dead += 1;
        let n = state.next_dead;
        state.dead.push((n, dl));
        self.dead_added.notify_waiters();
    }

    /// Hands every dead letter that arrived after number `after` to `tx`, as they come,
    /// until the receiver is gone.
    async fn feed_dead_letters(self: Arc<Self>, tx: mpsc::Sender<DeadLetterDelivery>) {
        let mut after = 0;
        loop {
            let added = self.dead_added.notified();
            tokio::pin!(added);
            added.as_mut().enable();
            let next = {
                let state = self.lock();
                state.dead.iter().find(|(n, _)| *n > after).cloned()
            };
            match next {
                Some((n, dl)) => {
                    after = n;
                    let settler = DeadLetterSettler {
                        inner: self.clone(),
                    };
                    if tx
                        .send(DeadLetterDelivery::in_process(dl, settler))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                None => tokio::select! {
                    _ = added => {}
                    _ = tx.closed() => return,
                },
            }
        }
    }
}

/// Acks an in-process dead letter: forgets it.
pub(crate) struct DeadLetterSettler {
    inner: Arc<Inner>,
}

impl DeadLetterSettler {
    pub(crate) fn ack(self, id: &str) {
        self.inner.lock().dead.retain(|(_, d)| d.id != id);
    }
}

#[derive(Debug)]
enum Settle {
    Ack,
    Requeue,
    Dropped,
    DeadLetter(Box<(Draft, DeadLetterReason)>),
}

/// The ack handle of one in-process delivery.
pub(crate) struct Settler {
    inner: Arc<Inner>,
    shard: ShardId,
    seq: u64,
    consumer: u64,
    settled: bool,
}

impl Settler {
    pub(crate) fn queue(&self) -> String {
        self.inner.topology.shard_queue(self.shard)
    }

    pub(crate) fn ack(mut self) -> Result<()> {
        self.settled = true;
        self.inner.clone().settle(&self, Settle::Ack);
        Ok(())
    }

    pub(crate) fn requeue(mut self) -> Result<()> {
        self.settled = true;
        self.inner.clone().settle(&self, Settle::Requeue);
        Ok(())
    }

    pub(crate) fn dead_letter(mut self, draft: Draft, reason: &DeadLetterReason) -> Result<()> {
        self.settled = true;
        self.inner
            .clone()
            .settle(&self, Settle::DeadLetter(Box::new((draft, reason.clone()))));
        Ok(())
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if !self.settled {
            self.settled = true;
            self.inner.clone().settle(self, Settle::Dropped);
        }
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn declare(&self) -> Result<()> {
        Ok(())
    }

    async fn publish(&self, batch: Vec<Outgoing>) -> Result<()> {
        let mut state = self.inner.lock();
        let mut touched = BTreeSet::new();
        for msg in batch {
            self.inner.route_one(&mut state, msg, &mut touched);
        }
        for shard in touched {
            self.inner.pump(&mut state, shard);
        }
        Ok(())
    }

    async fn consume(&self, shard: ShardId, prefetch: u16) -> Result<mpsc::Receiver<Delivery>> {
        if !self.inner.topology.contains(shard) {
            return Err(Error::UnknownShard {
                shard: shard.to_string(),
                shards: self.inner.topology.shards,
            });
        }
        if prefetch == 0 {
            return Err(Error::invalid("prefetch", "0", "at least 1"));
        }
        let (tx, rx) = mpsc::channel(usize::from(prefetch));
        let watcher = tx.clone();
        let id = {
            let mut state = self.inner.lock();
            let id = state.next_consumer;
            state.next_consumer += 1;
            state.shards.entry(shard).or_default().add_consumer(Slot {
                id,
                tx,
                prefetch: usize::from(prefetch),
            });
            self.inner.pump(&mut state, shard);
            id
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            watcher.closed().await;
            inner.retire(shard, id);
        });
        Ok(rx)
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let state = self.inner.lock();
        let topology = &self.inner.topology;
        let mut depths: Vec<(String, u64)> = topology
            .all_shards()
            .map(|s| {
                let ready = state.shards.get(&s).map_or(0, Shard::ready_len);
                (topology.shard_queue(s), ready as u64)
            })
            .collect();
        depths.push((topology.dead_letter_queue(), state.dead.len() as u64));
        depths.push((topology.unrouted(), 0));
        Ok(depths)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let state = self.inner.lock();
        Ok(state
            .dead
            .iter()
            .take(limit)
            .map(|(_, d)| d.clone())
            .collect())
    }

    async fn consume_dead_letters(
        &self,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<DeadLetterDelivery>> {
        if prefetch == 0 {
            return Err(Error::invalid("prefetch", "0", "at least 1"));
        }
        let (tx, rx) = mpsc::channel(usize::from(prefetch));
        tokio::spawn(self.inner.clone().feed_dead_letters(tx));
        Ok(rx)
    }

    async fn is_connected(&self) -> bool {
        true
    }
}
