//! The RabbitMQ transport (lapin 4, tokio).
//!
//! Flow: [`RabbitTransport::connect`] opens generation 1 of the [`link::Link`] and starts
//! the supervisor that replaces it after a loss (see [`link`]). `declare` builds the
//! topology of [`crate::topology`]; `publish` goes through the confirm channel
//! ([`publisher`]); `consume` opens a subscription per shard ([`consumer`]) whose
//! deliveries settle through [`settle`] (acks in bulk per channel, by the book of
//! [`ledger`]); dead letters live in `merit.dlq` ([`dlq`]) and unroutable messages are
//! moved there by [`RabbitTransport::run_unrouted_mover`].

mod addresses;
mod consumer;
mod declare;
mod dlq;
mod fields;
mod ledger;
mod link;
mod publisher;
mod reshard;
mod settle;
mod unrouted;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::future::BoxFuture;
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use tokio::sync::mpsc;

pub(crate) use consumer::Release;
pub(crate) use settle::Settler;

pub use self::{addresses::BrokerAddresses, reshard::ShardQueue};
use self::{
    link::{Shared, Supervisor},
    publisher::Prepared,
};
use crate::{
    deadletter::{DeadLetter, DeadLetterDelivery},
    delivery::{self, Delivery},
    error::{Error, Result},
    outgoing::Outgoing,
    routing::ShardId,
    topology::Topology,
    transport::Transport,
};

/// Longest accepted topology prefix, so every name stays within AMQP's 255 bytes.
const MAX_PREFIX_LEN: usize = 200;

/// Timeouts and reconnect pacing of a [`RabbitTransport`].
#[derive(Debug, Clone)]
pub struct RabbitOptions {
    /// How long `publish`, `declare` and the DLQ operations wait for a connection before
    /// failing (default 30 s).
    pub op_timeout: Duration,
    /// How long one connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// First reconnect delay (default 100 ms); doubles per failed attempt.
    pub reconnect_min: Duration,
    /// Longest reconnect delay (default 10 s).
    pub reconnect_max: Duration,
    /// Connection name shown by `rabbitmqctl list_connections` (default `merit`).
    pub connection_name: String,
    /// Replicas of each quorum queue this transport creates (`x-quorum-initial-group-size`);
    /// `None` (the default): the broker's default.
    pub quorum_group_size: Option<u16>,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        Self {
            op_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connection_name: "merit".into(),
            quorum_group_size: None,
        }
    }
}

/// Mailboxes on RabbitMQ: quorum shard queues behind a consistent-hash exchange per actor
/// kind, publisher confirms, and its own connection recovery.
///
/// Recovery: after a lost connection the transport reconnects by itself, re-declares the
/// topology (once declared) and resubscribes every consumer; a receiver from
/// [`Transport::consume`] keeps yielding after a reconnect. Deliveries received before it
/// are stale: settling them is a no-op returning `Ok` and the broker redelivers them.
pub struct RabbitTransport {
    shared: Arc<Shared>,
    _supervisor: Supervisor,
}

impl RabbitTransport {
    /// Connects to `amqp_url` (e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`, or several
    /// nodes of one cluster, comma-separated) with default options. Fails if no address
    /// takes this first connection; later losses are recovered, rotating through the
    /// addresses.
    pub async fn connect(amqp_url: &str, topology: Topology) -> Result<Self> {
        Self::connect_with(amqp_url, topology, RabbitOptions::default()).await
    }

    /// Like [`Self::connect`], with explicit timeouts and pacing.
    pub async fn connect_with(
        amqp_url: &str,
        topology: Topology,
        options: RabbitOptions,
    ) -> Result<Self> {
        if topology.prefix.len() > MAX_PREFIX_LEN {
            return Err(Error::invalid(
                "topology prefix",
                &topology.prefix,
                format!("at most {MAX_PREFIX_LEN} bytes"),
            ));
        }
        if topology.shards == 0 {
            return Err(Error::invalid("shard count", "0", "at least 1"));
        }
        let addresses = BrokerAddresses::parse(amqp_url)?;
        let shared = Arc::new(Shared::new(addresses, topology, options));
        let first = link::establish(&shared, 1).await?;
        let supervisor = Supervisor::start(shared.clone(), first);
        Ok(Self {
            shared,
            _supervisor: supervisor,
        })
    }

    /// The topology this transport declares and uses.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// The number of the live connection: 1 at first, +1 per reconnect; `None` while
    /// disconnected.
    pub fn connection_generation(&self) -> Option<u64> {
        self.shared.generation()
    }

    /// The broker address of the live connection, without credentials; `None` while
    /// disconnected.
    pub fn connected_address(&self) -> Option<String> {
        self.shared.current().map(|link| link.address.clone())
    }
}

#[async_trait]
impl Transport for RabbitTransport {
    /// Moves every message that reached `merit.unrouted` (unknown type, missing key
    /// header) to the dead-letter queue with its reason, until `shutdown` resolves. Run it
    /// on every node; the queue's single active consumer makes one of them do the work.
    async fn run_unrouted_mover(&self, shutdown: BoxFuture<'static, ()>) -> Result<()> {
        unrouted::run(self.shared.clone(), shutdown).await
    }

    #[tracing::instrument(skip_all, fields(prefix = %self.shared.topology.prefix))]
    async fn declare(&self) -> Result<()> {
        let (topology, options) = (&self.shared.topology, &self.shared.options);
        self.shared
            .with_link("declare the topology", |link| async move {
                declare::declare(&link.connection, topology, options).await
            })
            .await?;
        self.shared.mark_declared();
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(messages = batch.len()))]
    async fn publish(&self, batch: Vec<Outgoing>) -> Result<()> {
        let topology = &self.shared.topology;
        let prepared = batch
            .iter()
            .map(|m| Prepared::new(&topology.exchange_for(m.origin), m))
            .collect::<Result<Vec<_>>>()?;
        publisher::publish_confirmed(&self.shared, prepared).await
    }

    #[tracing::instrument(skip(self), fields(shard = %shard))]
    async fn consume(&self, shard: ShardId, prefetch: u16) -> Result<mpsc::Receiver<Delivery>> {
        let topology = &self.shared.topology;
        if !topology.contains(shard) {
            return Err(Error::UnknownShard {
                shard: shard.to_string(),
                shards: topology.shards,
            });
        }
        let queue = topology.shard_queue(shard);
        consumer::subscribe(self.shared.clone(), queue, prefetch, move |i| Delivery {
            shard,
            body: i.body,
            routing_key: i.routing_key,
            headers: i.headers,
            message_id: i.message_id,
            correlation_id: i.correlation_id,
            redelivered: i.redelivered,
            delivery_count: i.delivery_count,
            origin: i.origin,
            settler: delivery::Settler::Rabbit(i.settler),
        })
        .await
    }

    async fn queue_depths(&self) -> Result<Vec<(String, u64)>> {
        let queues = self.shared.topology.all_queues();
        self.shared
            .with_link("read queue depths", |link| {
                let queues = queues.clone();
                async move {
                    let ch = link.channel("read queue depths").await?;
                    let mut depths = Vec::with_capacity(queues.len());
                    for queue in queues {
                        let q = ch
                            .queue_declare(
                                queue.as_str().into(),
                                QueueDeclareOptions::durable().passive(),
                                FieldTable::default(),
                            )
                            .await
                            .map_err(|e| Error::amqp(format!("read the depth of {queue}"), e))?;
                        depths.push((queue, u64::from(q.message_count())));
                    }
                    if let Err(e) = ch.close(200, "depths read".into()).await {
                        tracing::debug!(error = %e, "closing the depth channel");
                    }
                    Ok(depths)
                }
            })
            .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        dlq::peek(&self.shared, limit).await
    }

    async fn consume_dead_letters(
        &self,
        prefetch: u16,
    ) -> Result<mpsc::Receiver<DeadLetterDelivery>> {
        dlq::consume(self.shared.clone(), prefetch).await
    }

    async fn is_connected(&self) -> bool {
        self.shared.current().is_some_and(|l| l.is_alive())
    }
}
