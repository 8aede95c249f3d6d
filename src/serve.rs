//! `merit serve`: wires settings, store, transport and the node together.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use merit_actors::{ConfigHandle, RetryPolicy, Services};
use merit_config::Settings;
use merit_mailbox::{InProcessTransport, RabbitTransport, Topology, Transport};
use merit_supervisors::{Node, NodeOptions, Residency, RestartPolicy};

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
        timer_interval: Duration::from_secs(1),
    }
}

/// The actors' shared services: the built-in dynamic config until the node loads the
/// stored one, and the cache — L1 → Redis → database with `MERIT_REDIS_URL`, else
/// L1 → database.
pub(crate) async fn services(settings: &Settings) -> Services {
    let config = merit_storage::CacheConfig {
        l1_capacity: settings.cache.l1_capacity,
        ttl: settings.cache.ttl(),
        key_prefix: "merit:".to_string(),
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
    Ok(match &settings.amqp_url {
        Some(url) => Arc::new(
            RabbitTransport::connect(url.expose(), topology)
                .await
                .with_context(|| format!("connect to RabbitMQ at {}", url.redacted()))?,
        ),
        None => Arc::new(InProcessTransport::new(topology)),
    })
}

/// How many of the most recently active users' benefits are loaded into the cache at start.
const WARM_USERS: u64 = 10_000;

pub(crate) async fn serve(settings: Settings) -> Result<()> {
    let store = crate::connect(&settings).await?;
    crate::migrate(&store, &settings).await?;
    let transport = transport(&settings).await?;
    let services = services(&settings).await;
    let node = Node::start(
        node_options(&settings),
        store.clone(),
        services.clone(),
        transport,
    )
    .await
    .context("start the node")?;
    let warmed = merit_actors::warm_benefits(&store, &services, WARM_USERS).await;
    tracing::info!(warmed, "benefits cache warmed with the most active users");
    let chain = crate::chain_runtime::ChainRuntime::start(&settings, &store)
        .await
        .context("start the chain listener and the saga executor")?;
    tracing::info!(node_id = %settings.node_id, "serving; SIGINT or SIGTERM stops");
    shutdown_signal().await;
    tracing::info!("shutting down");
    chain.stop().await;
    node.shutdown(Duration::from_secs(10)).await;
    store.close().await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the node");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
