//! The node under test, its HTTP API, a fresh node's activations, and the run's database.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use futures::{stream::FuturesUnordered, StreamExt};
use merit_api::{ApiOptions, Credentials};
use merit_config::Settings;
use merit_mailbox::{RabbitOptions, RabbitTransport, Topology, Transport};
use merit_messages::{Address, Envelope};
use merit_storage::{
    sea_orm::{ConnectionTrait, EntityTrait},
    Store, StoreOptions,
};
use merit_supervisors::Node;

/// The node the voting stages measure, with what feeds and watches it.
pub(super) struct UnderTest {
    /// The run's database.
    pub(super) store: Store,
    /// The node's broker connection (the activation stage's node reuses it).
    pub(super) transport: Arc<RabbitTransport>,
    /// The load generator's connection.
    pub(super) load: RabbitTransport,
    pub(super) node: Node,
    /// Where the node hands its notifications.
    pub(super) hub: merit_api::NotificationHub,
}

impl UnderTest {
    /// Declares `topology` and starts a node on it and on `store`, as `merit serve` does,
    /// with a load generator's connection beside it.
    pub(super) async fn start(
        settings: &Settings,
        store: Store,
        amqp: &str,
        topology: &Topology,
    ) -> Result<Self> {
        let transport = Arc::new(RabbitTransport::connect(amqp, topology.clone()).await?);
        transport.declare().await?;
        // The load generator publishes as a producer would: on a connection of its own,
        // not through the node's publisher channel.
        let load = RabbitTransport::connect_with(
            amqp,
            topology.clone(),
            RabbitOptions {
                connection_name: "merit-bench-load".to_string(),
                ..RabbitOptions::default()
            },
        )
        .await?;
        let hub = merit_api::NotificationHub::new("bench", ApiOptions::default().ws_buffer);
        let node = Node::start(
            crate::serve::node_options(settings),
            store.clone(),
            crate::serve::services(settings)
                .await
                .with_notifier(Arc::new(hub.clone())),
            transport.clone(),
        )
        .await?;
        Ok(Self {
            store,
            transport,
            load,
            node,
            hub,
        })
    }
}
/// Serves the node's HTTP API as `merit serve` does, on a free loopback port, trusting a
/// JWT secret made for this run (returned, to sign the clients' tokens) and alone: its
/// notifications do not fan out to other nodes on the broker, and it registers in the
/// bench's database only. It runs no chain side.
pub(super) async fn serve_api(
    settings: &Settings,
    store: &Store,
    transport: Arc<RabbitTransport>,
    node: &Node,
    hub: &merit_api::NotificationHub,
) -> Result<(crate::serve::Api, Credentials)> {
    let jwt_secret: [u8; 32] = rand::random();
    let admin_token: [u8; 32] = rand::random();
    let credentials = Credentials::new(&jwt_secret, &admin_token);
    let exposure = crate::serve::Exposure {
        listener: std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .context("listen on a free loopback port")?,
        metrics_listener: None,
        credentials: credentials.clone(),
        clustered: false,
        discovery: None,
    };
    let api = crate::serve::Api::start(
        settings,
        exposure,
        store,
        transport,
        node,
        None,
        hub.clone(),
    )
    .await
    .context("serve the HTTP API")?;
    Ok((api, credentials))
}

/// A fresh node on the same store activates every stored user actor (one event each that
/// changes nothing: a snapshot read, hydrate, and an inbox commit); returns how many, the
/// rate, and the resident memory added per actor.
pub(super) async fn activation(
    settings: &Settings,
    db_url: &str,
    transport: Arc<RabbitTransport>,
) -> Result<(usize, f64, f64)> {
    use merit_storage::{entities::user, sea_orm::QuerySelect};
    // A pool of its own: connections the previous node's actors opened belong to that
    // node's arbiter runtimes, which stopped with it (reusing one failed with "a Tokio
    // context … is being shutdown").
    let store = Store::connect(db_url, &StoreOptions::default()).await?;
    let users: Vec<String> = user::Entity::find()
        .select_only()
        .column(user::Column::Address)
        .into_tuple()
        .all(store.db())
        .await?;
    let node = Node::start(
        crate::serve::node_options(settings),
        store.clone(),
        crate::serve::services(settings).await,
        transport,
    )
    .await?;
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    for key in &users {
        let address: Address = key.parse().context("a stored user address")?;
        // An event the UserActor ignores (a vote recorded for someone else would be
        // refused as a key mismatch upstream; this one is addressed but changes nothing).
        let env = Arc::new(Envelope::new(
            "bench",
            merit_messages::BenefitsChanged {
                user: address,
                multiplier_bps: 10_000,
                boosting_nfts: Vec::new(),
                config_version: 0,
            },
        ));
        pending.push(node.registries().user.route(key.clone(), env, 0));
        // Bounded concurrency, as a shard's prefetch would.
        if pending.len() >= 200 {
            let _ = pending.next().await;
        }
    }
    while pending.next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    let resident: usize = node.status().registries.iter().map(|r| r.resident).sum();
    let rss = rss_bytes().saturating_sub(rss_before) as f64 / resident.max(1) as f64;
    node.shutdown(Duration::from_secs(10)).await;
    store.close().await?;
    Ok((users.len(), users.len() as f64 / secs, rss))
}

/// This process's resident set size (Linux), bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
pub(super) type Cleanup =
    Box<dyn FnOnce(Store) -> futures::future::BoxFuture<'static, Result<()>> + Send>;

/// A database of the run's own: its store, its name for the report, its URL (for the
/// fresh store each later node needs) and what removes it.
pub(super) async fn temp_database(
    settings: &Settings,
    run_id: &str,
) -> Result<(Store, String, String, Cleanup)> {
    let url = settings.database_url.expose();
    if url.starts_with("postgres") {
        let admin = Store::connect(
            url,
            &StoreOptions {
                max_connections: 1,
                ..Default::default()
            },
        )
        .await?;
        let name = format!("merit_bench_{run_id}");
        admin
            .db()
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
        let cut = url
            .rfind('/')
            .context("a PostgreSQL URL has a database path")?;
        let bench_url = format!("{}/{name}", &url[..cut]);
        let store = Store::connect(&bench_url, &StoreOptions::default()).await?;
        let cleanup: Cleanup = Box::new(move |store| {
            Box::pin(async move {
                store.close().await?;
                admin
                    .db()
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await?;
                admin.close().await?;
                Ok(())
            })
        });
        Ok((store, "PostgreSQL".to_string(), bench_url, cleanup))
    } else {
        let dir = tempfile::tempdir()?;
        let bench_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let store = Store::connect(&bench_url, &StoreOptions::default()).await?;
        let cleanup: Cleanup = Box::new(move |store| {
            Box::pin(async move {
                store.close().await?;
                drop(dir);
                Ok(())
            })
        });
        Ok((store, "SQLite".to_string(), bench_url, cleanup))
    }
}
