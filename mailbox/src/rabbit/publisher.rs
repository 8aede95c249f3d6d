//! Publishing with confirms on the link's publisher channel.
//!
//! A batch is written in order under the link's publish lock (so concurrent batches do not
//! interleave), then every confirm is awaited together: one round trip for the batch, not
//! one per message. If the connection drops before all confirms arrive, the unconfirmed
//! messages are written again, in order, on the next connection, until the publish
//! timeout; a message confirmed on the old connection is not resent, but one whose confirm
//! was lost in flight may be stored twice (receivers' inboxes absorb that).

use bytes::Bytes;
use futures::future::join_all;
use lapin::{options::BasicPublishOptions, types::ShortString, BasicProperties, Confirmation};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{fields, link::Shared};
use crate::{
    error::{Error, Result},
    outgoing::Outgoing,
};

/// A message checked and converted for AMQP.
pub(crate) struct Prepared {
    exchange: ShortString,
    routing_key: ShortString,
    body: Bytes,
    properties: BasicProperties,
}

impl Prepared {
    /// `msg` bound for `exchange`; fails if a name or id is longer than AMQP allows.
    pub(crate) fn new(exchange: &str, msg: &Outgoing) -> Result<Self> {
        Ok(Self {
            exchange: fields::short("exchange", exchange)?,
            routing_key: fields::short("routing key", &msg.routing_key)?,
            body: msg.body.clone(),
            properties: fields::properties(msg)?,
        })
    }
}

/// What happened to one message of a round.
enum Outcome {
    Confirmed,
    Refused,
    Retry,
}

/// Publishes `batch` and waits until the broker confirmed every message.
pub(crate) async fn publish_confirmed(shared: &Shared, batch: Vec<Prepared>) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let deadline = started + shared.options.op_timeout;
    let operation = format!("publish {} message(s)", batch.len());
    let mut pending: Vec<usize> = (0..batch.len()).collect();
    let mut after = 0;
    loop {
        let link = shared
            .link_before(deadline, after, &operation, started)
            .await?;
        let writing = round(&link.publisher, &link.publish_lock, &batch, &pending);
        // Bounded even with the link up: a broker under a resource alarm blocks publishers.
        let outcomes = tokio::time::timeout_at(deadline, writing)
            .await
            .map_err(|_| Error::Unavailable {
                operation: format!("{operation} (awaiting confirms)"),
                waited: started.elapsed(),
            })?;
        let mut retry = Vec::new();
        let mut channel_error = None;
        for (&index, outcome) in pending.iter().zip(outcomes) {
            match outcome {
                Ok(Outcome::Confirmed) => {}
                Ok(Outcome::Refused) => {
                    return Err(Error::Nacked {
                        routing_key: batch[index].routing_key.to_string(),
                    })
                }
                Ok(Outcome::Retry) => retry.push(index),
                Err(e) => {
                    retry.push(index);
                    channel_error.get_or_insert(e);
                }
            }
        }
        if retry.is_empty() {
            return Ok(());
        }
        link.report_broken();
        if let Some(e) = channel_error {
            if link.connection_open() {
                // The broker closed the publisher channel (e.g. a missing exchange): not
                // something waiting fixes. The supervisor replaces the channel.
                return Err(Error::amqp(
                    format!("publish to {}", batch[retry[0]].exchange),
                    e,
                ));
            }
        }
        warn!(
            unconfirmed = retry.len(),
            generation = link.generation,
            "connection lost before every publish was confirmed; resending on the next connection"
        );
        pending = retry;
        after = link.generation;
    }
}

/// Writes `pending` in order, then awaits their confirms together. Per message: its
/// outcome, or the channel error that ended the round.
async fn round(
    channel: &lapin::Channel,
    lock: &tokio::sync::Mutex<()>,
    batch: &[Prepared],
    pending: &[usize],
) -> Vec<std::result::Result<Outcome, lapin::Error>> {
    let mut confirms = Vec::with_capacity(pending.len());
    {
        let _writing = lock.lock().await;
        for &index in pending {
            let msg = &batch[index];
            let sent = channel
                .basic_publish(
                    msg.exchange.clone(),
                    msg.routing_key.clone(),
                    BasicPublishOptions::default(),
                    &msg.body,
                    msg.properties.clone(),
                )
                .await;
            match sent {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    debug!(error = %e, "publish failed; the rest of the round is resent");
                    break;
                }
            }
        }
    }
    let written = confirms.len();
    let mut outcomes: Vec<_> = join_all(confirms)
        .await
        .into_iter()
        .map(|confirmed| match confirmed {
            Ok(Confirmation::Ack(_)) | Ok(Confirmation::NotRequested) => Ok(Outcome::Confirmed),
            Ok(Confirmation::Nack(_)) => Ok(Outcome::Refused),
            Err(e) if e.is_amqp_soft_error() => Err(e),
            Err(e) => {
                debug!(error = %e, "confirm lost with the connection");
                Ok(Outcome::Retry)
            }
        })
        .collect();
    outcomes.extend((written..pending.len()).map(|_| Ok(Outcome::Retry)));
    outcomes
}
