//! What changing the shard count needs from the broker: the shard queues that exist, with
//! their depth and consumers, and deleting one that is empty and unused.

use lapin::{
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use merit_messages::ActorKind;

use super::RabbitTransport;
use crate::{
    error::{reply_code, Error, Result, NOT_FOUND},
    routing::ShardId,
};

/// Most shard queues per kind merit ever declares (`MERIT_MAILBOX_SHARDS` is 1 to 256).
const MAX_SHARDS: u16 = 256;

/// One shard queue as the broker holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardQueue {
    /// Its name, `merit.{kind}.{index}`.
    pub queue: String,
    /// Its shard number.
    pub index: u16,
    /// Messages ready in it.
    pub messages: u32,
    /// Consumers subscribed to it.
    pub consumers: u32,
}

impl RabbitTransport {
    /// The shard queues of `kind` on the broker: `merit.{kind}.0`, `.1`, … up to the first
    /// that does not exist (merit declares them without gaps), whatever this transport's
    /// own shard count is.
    pub async fn shard_queues(&self, kind: ActorKind) -> Result<Vec<ShardQueue>> {
        let mut found = Vec::new();
        for index in 0..MAX_SHARDS {
            let queue = self.shared.topology.shard_queue(ShardId { kind, index });
            match self.probe(&queue).await? {
                Some((messages, consumers)) => found.push(ShardQueue {
                    queue,
                    index,
                    messages,
                    consumers,
                }),
                None => break,
            }
        }
        Ok(found)
    }

    /// `(messages, consumers)` of queue `name`, or `None` if it does not exist.
    async fn probe(&self, name: &str) -> Result<Option<(u32, u32)>> {
        self.shared
            .with_link("read a shard queue", |link| async move {
                // A passive declare of a missing queue closes its channel: one per probe.
                let ch = link.channel("read a shard queue").await?;
                let declared = ch
                    .queue_declare(
                        name.into(),
                        QueueDeclareOptions::durable().passive(),
                        FieldTable::default(),
                    )
                    .await;
                match declared {
                    Ok(q) => {
                        let _ = ch.close(200, "read".into()).await;
                        Ok(Some((q.message_count(), q.consumer_count())))
                    }
                    Err(e) if reply_code(&e) == Some(NOT_FOUND) => Ok(None),
                    Err(e) => Err(Error::amqp(format!("read queue {name}"), e)),
                }
            })
            .await
    }

    /// Deletes queue `name` if it holds no message and has no consumer. Quorum queues do
    /// not support the broker's own `if-empty`/`if-unused` checks, so the queue is read just
    /// before: a message published in between would be lost with it, which is why
    /// producers must be stopped first.
    pub async fn delete_unused_empty_queue(&self, name: &str) -> Result<()> {
        match self.probe(name).await? {
            None => return Ok(()),
            Some((0, 0)) => {}
            Some((messages, consumers)) => {
                return Err(Error::invalid(
                    "queue to delete",
                    name,
                    format!("it holds {messages} messages and has {consumers} consumers"),
                ))
            }
        }
        self.shared
            .with_link("delete a shard queue", |link| async move {
                let ch = link.channel("delete a shard queue").await?;
                ch.queue_delete(name.into(), QueueDeleteOptions::default())
                    .await
                    .map_err(|e| Error::amqp(format!("delete queue {name}"), e))?;
                let _ = ch.close(200, "deleted".into()).await;
                Ok(())
            })
            .await
    }
}
