//! `merit serve`: wires settings, store, transport and the node together.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use merit_actors::{RetryPolicy, Services};
use merit_api::{ApiOptions, Discovery};
use merit_config::{ConfigHandle, RetentionSettings, Settings};
use merit_mailbox::{InProcessTransport, RabbitOptions, RabbitTransport, Topology, Transport};
use merit_storage::{Retention, Store};
use merit_supervisors::{Node, NodeOptions, Residency, RestartPolicy};

mod http;

pub(crate) use http::{Api, Exposure};

/// Node options from settings.
pub(crate) fn node_options(settings: &Settings) -> NodeOptions {
    NodeOptions {
        node_id: settings.node_id.clone(),
        shards: settings.mailbox.shards,
        prefetch: settings.mailbox.prefetch,
        retry: RetryPolicy {
            max_attempts: settings.mailbox.max_attempts,
            base_backoff: settings.mailbox.retry_base(),
            max_backoff: Duration::from_secs(30),
        },
        residency: Residency {
            max_resident: settings.actors.max_resident,
            idle: settings.actors.idle_passivate(),
        },
        restart: RestartPolicy::default(),
        arbiters: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        // SQLite serialises writers: one committer with big batches. PostgreSQL overlaps a few.
        commit_workers: if settings.database_url.expose().starts_with("sqlite") {
            1
        } else {
            4
        },
        commit_batch: 128,
        turn_batch: settings.actors.turn_batch,
        timer_interval: Duration::from_secs(1),
        retention: Retention {
            inbox: RetentionSettings::keep(settings.retention.inbox_days),
            outbox: RetentionSettings::keep(settings.retention.outbox_days),
            notifications: RetentionSettings::keep(settings.retention.notifications_days),
            chunk: 5_000,
        },
        sweep_interval: settings.retention.sweep_interval(),
        rebalance_interval: settings.cluster.rebalance_interval(),
        drain_limit: settings.cluster.drain_limit(),
    }
}

/// The live nodes as discovery lists them: the membership shard ownership is computed
/// from (see `merit_supervisors::ownership`).
struct DiscoveredNodes {
    discovery: Discovery,
    ttl: Duration,
    /// Only nodes consuming the same vhost share shards with this one.
    cluster: String,
}

#[async_trait::async_trait]
impl merit_supervisors::Membership for DiscoveredNodes {
    async fn live_nodes(&self) -> std::result::Result<Vec<String>, String> {
        self.discovery
            .live(self.ttl)
            .await
            .map(|nodes| {
                nodes
                    .into_iter()
                    .filter(|n| n.cluster == self.cluster)
                    .map(|n| n.node_id)
                    .collect()
            })
            .map_err(|e| e.to_string())
    }
}

/// The cluster a node belongs to: the RabbitMQ vhost of its shard queues (`/` when the
/// URL names none; the first address's, when it lists several), or `in-process` without
/// RabbitMQ.
pub(crate) fn cluster_of(settings: &Settings) -> String {
    cluster_of_amqp(settings.amqp_url.as_ref().map(|url| url.expose()))
}

fn cluster_of_amqp(amqp_url: Option<&str>) -> String {
    match amqp_url {
        Some(list) => merit_messages::split_url_list(list)[0]
            .parse::<lapin::uri::AMQPUri>()
            .map(|uri| uri.vhost)
            .unwrap_or_else(|_| "/".to_string()),
        None => "in-process".to_string(),
    }
}

/// Where this node registers and finds the others: Redis when configured, else the
/// database's `nodes` table.
pub(crate) async fn discovery(settings: &Settings, store: &Store) -> Discovery {
    match &settings.redis_url {
        Some(url) => {
            Discovery::redis_or_store(url.expose(), &settings.cache.redis_prefix, store.clone())
                .await
        }
        None => Discovery::Store(store.clone()),
    }
}

/// The actors' shared services: the built-in dynamic config until the node loads the
/// stored one, and the cache — L1 → Redis → database with `MERIT_REDIS_URL`, else
/// L1 → database.
pub(crate) async fn services(settings: &Settings) -> Services {
    let config = merit_storage::CacheConfig {
        l1_capacity: settings.cache.l1_capacity,
        ttl: settings.cache.ttl(),
        key_prefix: settings.cache.redis_prefix.clone(),
        node_id: settings.node_id.clone(),
    };
    let cache = match &settings.redis_url {
        Some(url) => merit_storage::TieredCache::with_redis(config, url.expose()).await,
        None => merit_storage::TieredCache::local(config),
    };
    Services::new(ConfigHandle::default(), cache)
}

/// The transport the settings select: RabbitMQ when `MERIT_AMQP_URL` is set.
pub(crate) async fn transport(settings: &Settings) -> Result<Arc<dyn Transport>> {
    let topology = Topology {
        prefix: String::new(),
        shards: settings.mailbox.shards,
    };
    let options = RabbitOptions {
        quorum_group_size: settings.mailbox.quorum_group_size,
        ..RabbitOptions::default()
    };
    Ok(match &settings.amqp_url {
        Some(url) => Arc::new(
            RabbitTransport::connect_with(url.expose(), topology, options)
                .await
                .with_context(|| format!("connect to RabbitMQ at {}", url.redacted()))?,
        ),
        None => Arc::new(InProcessTransport::new(topology)),
    })
}

/// A plain AMQP connection to the first of `list`'s broker addresses that answers (10 s
/// per address), for the tools that talk to the broker outside a transport.
pub(crate) async fn amqp_connection(list: &str) -> Result<lapin::Connection> {
    let addresses = merit_mailbox::BrokerAddresses::parse(list)?;
    let (connection, _) = addresses
        .connect(
            &lapin::ConnectionProperties::default(),
            std::time::Duration::from_secs(10),
        )
        .await?;
    Ok(connection)
}

/// How many of the most recently active users' benefits are loaded into the cache at start.
const WARM_USERS: u64 = 10_000;

/// A node with everything `merit serve` runs: actors, consumers, relay, timers, the chain
/// side (listener, full sync, sagas) and HTTP.
pub(crate) struct Running {
    /// The database.
    pub(crate) store: Store,
    /// The mailbox transport.
    pub(crate) transport: Arc<dyn Transport>,
    /// Live notification delivery.
    pub(crate) hub: merit_api::NotificationHub,
    /// The HTTP side.
    pub(crate) api: Api,
    node: Node,
    chain: crate::chain_runtime::ChainRuntime,
}

impl Running {
    /// Migrates and starts everything; `chain` replaces the chain the settings select (the
    /// demo keeps a handle on its dev chain).
    pub(crate) async fn start(
        settings: &Settings,
        chain: Option<Arc<dyn merit_chain::Chain>>,
    ) -> Result<Self> {
        let store = crate::connect(settings).await?;
        crate::migrate(&store, settings).await?;
        let transport = transport(settings).await?;
        let hub = merit_api::NotificationHub::new(
            settings.node_id.clone(),
            ApiOptions::default().ws_buffer,
        );
        let services = services(settings)
            .await
            .with_notifier(Arc::new(hub.clone()));
        let discovery = discovery(settings, &store).await;
        // On RabbitMQ the shards are shared with every other node on the same queues: own
        // a balanced share of them. In process there is no other node.
        let node = if settings.amqp_url.is_some() {
            let membership = Arc::new(DiscoveredNodes {
                discovery: discovery.clone(),
                ttl: ApiOptions::default().node_ttl,
                cluster: cluster_of(settings),
            });
            Node::start_in_cluster(
                node_options(settings),
                store.clone(),
                services.clone(),
                transport.clone(),
                membership,
            )
            .await
        } else {
            Node::start(
                node_options(settings),
                store.clone(),
                services.clone(),
                transport.clone(),
            )
            .await
        }
        .context("start the node")?;
        let warmed = merit_actors::warm_benefits(&store, &services, WARM_USERS).await;
        tracing::info!(warmed, "benefits cache warmed with the most active users");
        let chain = crate::chain_runtime::ChainRuntime::start(settings, &store, chain)
            .await
            .context("start the chain listener and the saga executor")?;
        let exposure = Exposure {
            discovery: Some(discovery),
            ..Exposure::from_settings(settings)?
        };
        let api = Api::start(
            settings,
            exposure,
            &store,
            transport.clone(),
            &node,
            Some(&chain),
            hub.clone(),
        )
        .await?;
        tracing::info!(node_id = %settings.node_id, http = %api.address, "serving; SIGINT or SIGTERM stops");
        Ok(Self {
            store,
            transport,
            hub,
            api,
            node,
            chain,
        })
    }

    /// The node's status.
    pub(crate) fn status(&self) -> merit_supervisors::NodeStatus {
        self.node.status()
    }

    /// The saga executor.
    pub(crate) fn sagas(&self) -> merit_sagas::SagaExecutor {
        self.chain.executor()
    }

    /// Stops HTTP, the chain side and the node, in that order, then closes the database.
    pub(crate) async fn stop(self) -> Result<()> {
        tracing::info!("shutting down");
        self.api.stop().await;
        self.chain.stop().await;
        self.node.shutdown(Duration::from_secs(10)).await;
        self.store.close().await?;
        Ok(())
    }
}

pub(crate) async fn serve(settings: Settings) -> Result<()> {
    let mut stop = std::pin::pin!(shutdown_signal());
    let running = tokio::select! {
        running = Running::start(&settings, None) => running?,
        () = &mut stop => {
            // Nothing was acked that is not committed, so a stop during the start loses
            // nothing: what was in flight comes again to the next consumer.
            tracing::info!("stopped while starting");
            return Ok(());
        }
    };
    stop.await;
    running.stop().await
}

/// Registers for SIGINT and SIGTERM at once and resolves when one arrives. Registered
/// before the node starts, a stop asked during the start ends the process with success
/// instead of the signal's default action killing it.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let signals = signal(SignalKind::terminate())
        .and_then(|term| signal(SignalKind::interrupt()).map(|int| (term, int)));
    async move {
        match signals {
            Ok((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the node");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cluster_of_amqp;

    #[test]
    fn the_cluster_is_the_vhost_of_the_first_broker_address() {
        assert_eq!(cluster_of_amqp(None), "in-process");
        assert_eq!(cluster_of_amqp(Some("amqp://u:p@mq:5672/%2f")), "/");
        assert_eq!(cluster_of_amqp(Some("amqp://u:p@mq:5672/merit")), "merit");
        assert_eq!(
            cluster_of_amqp(Some("amqp://u:p@mq1:5672/merit,amqp://u:p@mq2:5672/merit")),
            "merit"
        );
    }
}
