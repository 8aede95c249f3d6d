//! Consuming a queue: one channel per subscription, `basic.qos(prefetch)`, manual acks,
//! each delivery forwarded into a bounded mpsc (capacity = prefetch). Each channel has a
//! settle task ([`super::settle`]) that learns every delivery tag before the delivery is
//! handed out and acks in bulk.
//!
//! Recovery: when the connection is lost, the subscription resubscribes by itself on the
//! next connection and keeps feeding the same receiver; deliveries received before that
//! are stale (acking them is a no-op, the broker redelivers them). The receiver ends only
//! when the broker cancels the consumer with the connection still up (queue deleted),
//! when resubscribing is refused, or when the transport is closed.
//!
//! Dropping (or closing) the receiver ends the subscription by closing its channel, not
//! by cancelling the consumer: the broker then returns every unsettled delivery and moves
//! the queue to the next waiting consumer in one step. A cancel would hand the queue over
//! at once while the unsettled deliveries stay checked out to the old consumer, so they
//! would be returned after newer messages had gone to the new one (per-key order lost).
//! So settle (or [`release`](crate::Delivery::release)) what was taken before dropping
//! the receiver: an ack not yet written when the channel closes is lost, and its message
//! comes again (the inbox absorbs it).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, BasicQosOptions},
    types::FieldTable,
    Channel, Consumer,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    fields,
    link::{Link, Shared},
    settle::{Note, SettleHandle, Settler},
};
use crate::{
    deadletter::{DeadLetterReason, Draft},
    error::{Error, Result},
};
use merit_messages::Origin;

/// A channel that carries one subscription; shared by its deliveries.
pub(crate) struct ConsumerChannel {
    pub(crate) channel: Channel,
    /// The connection generation it was opened on.
    pub(crate) generation: u64,
    /// Its settle task, which acks its deliveries in bulk.
    pub(crate) settle: SettleHandle,
}

impl ConsumerChannel {
    /// True when the channel or its connection generation is gone.
    pub(crate) fn stale(&self, shared: &Shared) -> bool {
        !self.channel.status().connected() || shared.generation() != Some(self.generation)
    }
}

/// What a subscription hands out: something that can be given back unsettled, to return
/// to its queue when the channel closes (see the module docs).
pub(crate) trait Release {
    /// Leaves it unsettled; the broker returns it when its channel closes.
    fn release(self);
}

impl Release for crate::Delivery {
    fn release(self) {
        crate::Delivery::release(self);
    }
}

impl Release for Incoming {
    fn release(self) {
        self.settler.release();
    }
}

/// A delivery before it is given a shard (the mover uses it as is).
pub(crate) struct Incoming {
    pub(crate) body: Bytes,
    pub(crate) routing_key: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) message_id: Option<String>,
    pub(crate) correlation_id: Option<String>,
    pub(crate) redelivered: bool,
    pub(crate) delivery_count: u32,
    /// The door it came in through: the exchange it was published to (the broker keeps
    /// that through exchange-to-exchange bindings and alternate exchanges).
    pub(crate) origin: Origin,
    /// The broker's `x-death` record, on a message the broker dead-lettered.
    pub(crate) death: Option<super::dlq::Death>,
    pub(crate) settler: Settler,
}

impl Incoming {
    /// Dead-letters it from the queue it came from.
    pub(crate) async fn dead_letter(self, reason: &DeadLetterReason) -> Result<()> {
        let draft = Draft {
            routing_key: self.routing_key,
            body: self.body,
            headers: self.headers,
            message_id: self.message_id,
            correlation_id: self.correlation_id,
            source_queue: self.settler.queue().to_string(),
            origin: self.origin,
        };
        self.settler.dead_letter(draft, reason).await
    }
}

/// Subscribes to `queue` and returns the stream of its deliveries, converted by `convert`.
/// The first subscription happens before returning, so a missing queue is an error here.
pub(crate) async fn subscribe<T, F>(
    shared: Arc<Shared>,
    queue: String,
    prefetch: u16,
    convert: F,
) -> Result<mpsc::Receiver<T>>
where
    T: Release + Send + 'static,
    F: Fn(Incoming) -> T + Send + Sync + 'static,
{
    if prefetch == 0 {
        return Err(Error::invalid("prefetch", "0", "at least 1"));
    }
    let queue: Arc<str> = queue.into();
    let first = shared
        .with_link(&format!("consume {queue}"), |link| {
            open(link, shared.clone(), queue.clone(), prefetch)
        })
        .await?;
    let (tx, rx) = mpsc::channel(usize::from(prefetch));
    tokio::spawn(run(shared, queue, prefetch, tx, convert, first));
    Ok(rx)
}

struct Subscription {
    link: Arc<Link>,
    channel: Arc<ConsumerChannel>,
    consumer: Consumer,
}

async fn open(
    link: Arc<Link>,
    shared: Arc<Shared>,
    queue: Arc<str>,
    prefetch: u16,
) -> Result<Subscription> {
    let channel = link.channel(&format!("consume {queue}")).await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| Error::amqp(format!("set prefetch {prefetch} for {queue}"), e))?;
    let tag = format!("merit-{}", uuid::Uuid::new_v4().simple());
    let consumer = channel
        .basic_consume(
            queue.as_ref().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| Error::amqp(format!("consume {queue}"), e))?;
    // Acks that cannot join the prefix (an earlier delivery is still in a turn) go out one
    // by one in the same flush rather than wait: a caller may hold that earlier delivery
    // while it awaits this ack, and waiting acks would also hold the prefetch window.
    let settle = SettleHandle::start(channel.clone(), link.generation, shared, queue, 1);
    Ok(Subscription {
        channel: Arc::new(ConsumerChannel {
            channel,
            generation: link.generation,
            settle,
        }),
        link,
        consumer,
    })
}

/// Why a subscription stopped.
enum End {
    /// The application dropped the receiver, or the transport closed.
    Done,
    /// The broker cancelled the consumer while the connection stayed up.
    Cancelled,
    /// The connection is gone: resubscribe on the next one.
    ConnectionLost,
    /// The channel died but the connection lives: resubscribe on a new channel.
    ChannelLost,
}

/// Consecutive channel failures on a live connection before the stream gives up.
const MAX_CHANNEL_LOSSES: u32 = 5;

async fn run<T, F>(
    shared: Arc<Shared>,
    queue: Arc<str>,
    prefetch: u16,
    tx: mpsc::Sender<T>,
    convert: F,
    first: Subscription,
) where
    T: Release + Send + 'static,
    F: Fn(Incoming) -> T + Send + Sync + 'static,
{
    let mut sub = first;
    let mut channel_losses = 0;
    loop {
        let end = forward(&shared, &queue, &mut sub, &tx, &convert).await;
        let after = match end {
            End::Done => {
                release(sub, &queue).await;
                return;
            }
            End::Cancelled => {
                warn!(queue = %queue, "the broker cancelled the consumer; ending the stream");
                return;
            }
            End::ConnectionLost => sub.link.generation,
            End::ChannelLost => {
                channel_losses += 1;
                if channel_losses > MAX_CHANNEL_LOSSES {
                    warn!(queue = %queue, "consumer channel keeps failing; ending the stream");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                sub.link.generation - 1
            }
        };
        let lost = sub.link.generation;
        drop(sub);
        sub = match resubscribe(&shared, &queue, prefetch, &tx, after).await {
            Some(sub) => sub,
            None => return,
        };
        if sub.link.generation > lost {
            channel_losses = 0;
        }
    }
}

/// Ends a subscription the application let go of: closes its channel first, so the broker
/// returns the unsettled deliveries before another consumer becomes active (see the
/// module docs), then drops the consumer (lapin would cancel it on drop).
async fn release(sub: Subscription, queue: &str) {
    if sub.channel.channel.status().connected() {
        if let Err(e) = sub
            .channel
            .channel
            .close(200, "consumer released".into())
            .await
        {
            debug!(queue = %queue, error = %e, "closing a released consumer's channel");
        }
    }
    drop(sub);
}

/// Waits for a connection newer than `after` and subscribes on it; `None` to stop.
async fn resubscribe<T>(
    shared: &Arc<Shared>,
    queue: &Arc<str>,
    prefetch: u16,
    tx: &mpsc::Sender<T>,
    mut after: u64,
) -> Option<Subscription> {
    loop {
        let link = tokio::select! {
            link = shared.next_link(after) => link?,
            _ = tx.closed() => return None,
        };
        match open(link.clone(), shared.clone(), queue.clone(), prefetch).await {
            Ok(sub) => {
                info!(queue = %queue, generation = link.generation, "resubscribed");
                return Some(sub);
            }
            Err(e) if link.connection_open() => {
                warn!(queue = %queue, error = %e, "resubscribing was refused; ending the stream");
                return None;
            }
            Err(e) => {
                debug!(queue = %queue, error = %e, "connection lost while resubscribing");
                after = link.generation;
            }
        }
    }
}

async fn forward<T, F>(
    shared: &Arc<Shared>,
    queue: &Arc<str>,
    sub: &mut Subscription,
    tx: &mpsc::Sender<T>,
    convert: &F,
) -> End
where
    T: Release,
    F: Fn(Incoming) -> T,
{
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return End::Done,
            _ = shared.closed() => return End::Done,
            next = sub.consumer.next() => next,
        };
        match next {
            Some(Ok(delivery)) => {
                let item = convert(incoming(delivery, sub, shared, queue));
                tokio::select! {
                    sent = tx.send(item) => if let Err(mpsc::error::SendError(item)) = sent {
                        // The receiver let go (a handover) while this one was on its way:
                        // it returns with the others when the channel closes, in order.
                        item.release();
                        return End::Done;
                    },
                    _ = shared.closed() => return End::Done,
                }
            }
            Some(Err(e)) => debug!(queue = %queue, error = %e, "consumer error"),
            None => {
                return if !sub.link.connection_open() {
                    End::ConnectionLost
                } else if !sub.channel.channel.status().connected() {
                    End::ChannelLost
                } else {
                    End::Cancelled
                };
            }
        }
    }
}

fn incoming(
    d: lapin::message::Delivery,
    sub: &Subscription,
    shared: &Arc<Shared>,
    queue: &Arc<str>,
) -> Incoming {
    // Before the delivery exists, so the settle task knows the tag before any settle.
    sub.channel.settle.send(Note::Delivered(d.delivery_tag));
    let headers = fields::headers(&d.properties);
    let origin = if d.exchange.as_str() == shared.topology.internal_exchange() {
        Origin::Merit
    } else {
        Origin::Producer
    };
    Incoming {
        origin,
        death: super::dlq::latest_death(&d.properties),
        delivery_count: fields::delivery_count(&headers),
        message_id: d.properties.message_id().as_ref().map(|s| s.to_string()),
        correlation_id: d
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.to_string()),
        routing_key: d.routing_key.to_string(),
        redelivered: d.redelivered,
        body: Bytes::from(d.data),
        headers,
        settler: Settler::new(
            d.acker,
            d.delivery_tag,
            sub.channel.clone(),
            shared.clone(),
            queue.clone(),
        ),
    }
}
