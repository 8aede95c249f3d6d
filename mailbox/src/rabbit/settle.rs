//! Settling one RabbitMQ delivery: ack, requeue or dead-letter it on the channel it came
//! from — and only if that channel, on that connection generation, is still open. A
//! delivery tag means nothing on another channel (acking it there would ack someone
//! else's message or make the broker close the channel), so a stale settle is a no-op
//! that returns `Ok`: the broker has already returned the message to the queue.

use std::sync::Arc;

use lapin::{
    options::{BasicAckOptions, BasicNackOptions},
    Acker,
};
use tracing::debug;

use super::{consumer::ConsumerChannel, dlq, link::Shared};
use crate::{
    deadletter::{DeadLetterReason, Draft},
    error::{Error, Result},
};

/// The ack handle of one delivery; requeues on drop if never settled.
pub(crate) struct Settler {
    acker: Acker,
    /// Keeps the channel open while this delivery is outstanding.
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
        channel: Arc<ConsumerChannel>,
        shared: Arc<Shared>,
        queue: Arc<str>,
    ) -> Self {
        Self {
            acker,
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

    pub(crate) async fn ack(mut self) -> Result<()> {
        self.settled = true;
        self.settle(Settle::Ack).await
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
        self.acker.poisoned()
            || !self.channel.channel.status().connected()
            || self.shared.generation() != Some(self.channel.generation)
    }

    async fn settle(&self, how: Settle) -> Result<()> {
        if self.stale() {
            debug!(queue = %self.queue, generation = self.channel.generation, ?how,
                "delivery from a closed channel: not settled; the broker redelivers it");
            return Ok(());
        }
        let result = match how {
            Settle::Ack => self.acker.ack(BasicAckOptions { multiple: false }).await,
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
            Ok(true) => Ok(()),
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
        runtime.spawn(async move {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) = acker.nack(requeue).await {
                debug!(queue = %queue, error = %e, "requeueing a dropped delivery failed; \
                    it returns to the queue when its channel closes");
            }
            drop(channel);
        });
    }
}
