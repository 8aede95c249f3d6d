//! Settling RabbitMQ deliveries: ack, requeue or dead-letter each on the channel it came
//! from — and only if that channel, on that connection generation, is still open. A
//! delivery tag means nothing on another channel (acking it there would ack someone
//! else's message or make the broker close the channel), so a stale settle is a no-op
//! that returns `Ok`: the broker has already returned the message to the queue.
//!
//! Acks are settled in bulk per channel: each consumer channel has a small settle task
//! ([`SettleHandle`]) that owns the channel's [`Ledger`], learns every delivery tag as it
//! is delivered, and, each time it wakes, drains what is queued and sends one
//! `basic.ack(multiple=true)` for the longest prefix of tags that are all acked or
//! already settled on their own. Requeues and the ack after a dead letter stay
//! individual (`multiple: false`) and are sent by the [`Settler`] itself; their tag is a
//! hole in the prefix until that frame was sent. [`Settler::ack`] still returns only after
//! the frame that carries its ack was written (or at once, `Ok`, for a stale delivery).
//! A dropped [`Settler`] requeues only a delivery that was never settled: once acked it is
//! the ledger's, and nothing nacks it.

use std::{collections::BTreeMap, sync::Arc};

use lapin::{
    options::{BasicAckOptions, BasicNackOptions},
    Acker, Channel,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{
    consumer::ConsumerChannel,
    dlq,
    ledger::{Acked, Frame, Ledger},
    link::Shared,
};
use crate::{
    deadletter::{DeadLetterReason, Draft},
    error::{Error, Result},
};

/// The ack handle of one delivery; requeues on drop if never settled.
pub(crate) struct Settler {
    acker: Acker,
    /// The delivery tag on its channel.
    tag: u64,
    /// Keeps the channel (and its settle task) open while this delivery is outstanding.
    channel: Arc<ConsumerChannel>,
    shared: Arc<Shared>,
    queue: Arc<str>,
    settled: bool,
}

#[derive(Clone, Copy, Debug)]
enum Settle {
    Ack,
    Requeue,
}

impl Settler {
    pub(crate) fn new(
        acker: Acker,
        tag: u64,
        channel: Arc<ConsumerChannel>,
        shared: Arc<Shared>,
        queue: Arc<str>,
    ) -> Self {
        Self {
            acker,
            tag,
            channel,
            shared,
            queue,
            settled: false,
        }
    }

    /// The queue the delivery came from.
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    /// Leaves the delivery unsettled and sends nothing: it returns to the queue, in the
    /// order the broker delivered it, when its consumer channel closes (a handover).
    pub(crate) fn release(mut self) {
        self.settled = true;
    }

    /// Acks through the channel's settle task; returns once the (possibly multiple) ack
    /// that covers this delivery was written, or at once for a stale delivery.
    pub(crate) async fn ack(mut self) -> Result<()> {
        self.settled = true;
        if self.stale() {
            debug!(queue = %self.queue, generation = self.channel.generation,
                "delivery from a closed channel: not acked; the broker redelivers it");
            return Ok(());
        }
        let (done, written) = oneshot::channel();
        let note = Note::Acked {
            tag: self.tag,
            acker: self.acker.clone(),
            done,
        };
        if !self.channel.settle.send(note) {
            return Err(self.gone());
        }
        match written.await {
            Ok(result) => result,
            Err(_) if self.stale() => Ok(()),
            Err(_) => Err(self.gone()),
        }
    }

    pub(crate) async fn requeue(mut self) -> Result<()> {
        self.settled = true;
        self.settle(Settle::Requeue).await
    }

    /// Publishes the dead letter with a confirm, then acks. If publishing fails the
    /// delivery is requeued (on drop) and the error returned. A stale delivery is not
    /// dead-lettered: the broker already gave it back and it will be handled again, so a
    /// dead letter now would become a duplicate.
    pub(crate) async fn dead_letter(
        mut self,
        draft: Draft,
        reason: &DeadLetterReason,
    ) -> Result<()> {
        if self.stale() {
            self.settled = true;
            debug!(queue = %self.queue, class = %reason.class,
                "delivery from a closed channel: not dead-lettered; the broker redelivers it");
            return Ok(());
        }
        dlq::publish_dead_letter(&self.shared, draft, reason).await?;
        self.settled = true;
        self.settle(Settle::Ack).await
    }

    /// True when the delivery's channel or connection generation is gone.
    fn stale(&self) -> bool {
        self.acker.poisoned() || self.channel.stale(&self.shared)
    }

    /// The settle task is gone (it only ends with its channel): the ack was not sent.
    fn gone(&self) -> Error {
        warn!(queue = %self.queue, "the consumer channel's settle task ended before an ack");
        Error::Closed
    }

    /// Settles this delivery alone; once its frame was sent the ledger stops treating it
    /// as a hole.
    async fn settle(&self, how: Settle) -> Result<()> {
        if self.stale() {
            debug!(queue = %self.queue, generation = self.channel.generation, ?how,
                "delivery from a closed channel: not settled; the broker redelivers it");
            return Ok(());
        }
        let result = match how {
            Settle::Ack => {
                metrics::counter!("merit_acks_total", "mode" => "single").increment(1);
                self.acker.ack(BasicAckOptions { multiple: false }).await
            }
            Settle::Requeue => {
                self.acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
        };
        match result {
            Ok(true) => {
                self.channel.settle.send(Note::Settled(self.tag));
                Ok(())
            }
            Ok(false) => {
                debug!(queue = %self.queue, ?how, "delivery already settled or its channel closed");
                Ok(())
            }
            Err(e) if self.stale() => {
                debug!(queue = %self.queue, ?how, error = %e,
                    "channel closed while settling; the broker redelivers it");
                Ok(())
            }
            Err(e) => Err(Error::amqp(
                format!("{how:?} a delivery from {}", self.queue),
                e,
            )),
        }
    }
}

impl Drop for Settler {
    fn drop(&mut self) {
        if self.settled || self.stale() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to send the nack on: the message returns to the queue when the
            // channel closes.
            return;
        };
        let acker = self.acker.clone();
        let channel = self.channel.clone();
        let queue = self.queue.clone();
        let tag = self.tag;
        runtime.spawn(async move {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            match acker.nack(requeue).await {
                Ok(true) => {
                    channel.settle.send(Note::Settled(tag));
                }
                Ok(false) => {}
                Err(e) => debug!(queue = %queue, error = %e, "requeueing a dropped delivery \
                    failed; it returns to the queue when its channel closes"),
            }
            drop(channel);
        });
    }
}

/// What a consumer channel's settle task is told, in channel order.
pub(crate) enum Note {
    /// The consumer received this tag.
    Delivered(u64),
    /// The application acked this tag; `done` hears when the frame that carries it was
    /// written.
    Acked {
        tag: u64,
        acker: Acker,
        done: oneshot::Sender<Result<()>>,
    },
    /// The frame settling this tag alone (a requeue, the ack after a dead letter) was sent.
    Settled(u64),
}

/// The sending side of a consumer channel's settle task; the task ends when this is
/// dropped (with the channel) and everything queued was handled.
pub(crate) struct SettleHandle {
    notes: mpsc::UnboundedSender<Note>,
}

impl SettleHandle {
    /// Starts the settle task of `channel` (opened on `generation`); `spill` acked tags
    /// waiting behind a hole are acked one by one (see [`Ledger`]).
    pub(crate) fn start(
        channel: Channel,
        generation: u64,
        shared: Arc<Shared>,
        queue: Arc<str>,
        spill: usize,
    ) -> Self {
        let (notes, rx) = mpsc::unbounded_channel();
        let task = SettleTask {
            channel,
            generation,
            shared,
            queue,
            ledger: Ledger::new(spill),
            waiting: BTreeMap::new(),
            stale: false,
        };
        tokio::spawn(task.run(rx));
        Self { notes }
    }

    /// Queues a note for the task; `false` if the task is gone.
    pub(crate) fn send(&self, note: Note) -> bool {
        self.notes.send(note).is_ok()
    }
}

/// An application ack that waits for its frame.
struct Waiter {
    acker: Acker,
    done: oneshot::Sender<Result<()>>,
}

struct SettleTask {
    /// A clone of the consumer channel: keeps it open until the task has sent what it
    /// holds.
    channel: Channel,
    generation: u64,
    shared: Arc<Shared>,
    queue: Arc<str>,
    ledger: Ledger,
    /// Acked tags whose frame was not sent yet.
    waiting: BTreeMap<u64, Waiter>,
    /// Set once the channel or its generation is gone: every ack is then a no-op.
    stale: bool,
}

impl SettleTask {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Note>) {
        while let Some(note) = rx.recv().await {
            self.apply(note);
            while let Ok(note) = rx.try_recv() {
                self.apply(note);
            }
            self.flush().await;
        }
        if !self.waiting.is_empty() && !self.is_stale() {
            debug!(queue = %self.queue, acks = self.waiting.len(),
                "consumer channel closing with acks behind an unsettled delivery; \
                the broker redelivers them");
        }
    }

    fn apply(&mut self, note: Note) {
        match note {
            Note::Delivered(tag) => self.ledger.delivered(tag),
            Note::Settled(tag) => self.ledger.settled(tag),
            Note::Acked { tag, acker, done } => {
                if self.stale {
                    let _ = done.send(Ok(()));
                    return;
                }
                match self.ledger.acked(tag) {
                    Acked::Pending => {
                        self.waiting.insert(tag, Waiter { acker, done });
                    }
                    Acked::AlreadySettled => {
                        debug!(queue = %self.queue, tag, "ack of a delivery already settled");
                        let _ = done.send(Ok(()));
                    }
                }
            }
        }
    }

    fn is_stale(&self) -> bool {
        !self.channel.status().connected() || self.shared.generation() != Some(self.generation)
    }

    /// Sends what the ledger allows now, one frame after the other.
    async fn flush(&mut self) {
        if self.stale || self.is_stale() {
            self.give_up_stale();
            return;
        }
        for frame in self.ledger.take() {
            let Frame { tag, multiple } = frame;
            let covered = if multiple {
                let rest = self.waiting.split_off(&(tag + 1));
                std::mem::replace(&mut self.waiting, rest)
            } else {
                self.waiting
                    .remove(&tag)
                    .map(|w| (tag, w))
                    .into_iter()
                    .collect()
            };
            let Some(named) = covered.get(&tag) else {
                // The ledger only names tags acked through this task.
                warn!(queue = %self.queue, tag, "settle frame for a tag without its ack; not sent");
                continue;
            };
            let mode = if multiple { "multiple" } else { "single" };
            metrics::counter!("merit_acks_total", "mode" => mode).increment(1);
            let result = named.acker.ack(BasicAckOptions { multiple }).await;
            let failure = match result {
                Ok(true) => None,
                Ok(false) => {
                    debug!(queue = %self.queue, tag, "ack not sent: its channel closed");
                    None
                }
                Err(_) if self.is_stale() => None,
                Err(e) => Some(e),
            };
            for (_, waiter) in covered {
                let reply = match &failure {
                    None => Ok(()),
                    Some(e) => Err(Error::amqp(
                        format!("ack deliveries from {}", self.queue),
                        e.clone(),
                    )),
                };
                let _ = waiter.done.send(reply);
            }
            if self.is_stale() {
                self.give_up_stale();
                return;
            }
        }
    }

    /// The channel or its generation is gone: the broker requeues whatever it did not
    /// see acked, so every pending ack is answered `Ok` and nothing more is sent.
    fn give_up_stale(&mut self) {
        if !self.stale {
            let dropped = self.ledger.reset();
            debug!(queue = %self.queue, generation = self.generation, dropped,
                "consumer channel closed: unsent acks dropped; the broker redelivers them");
        }
        self.stale = true;
        for (_, waiter) in std::mem::take(&mut self.waiting) {
            let _ = waiter.done.send(Ok(()));
        }
    }
}
