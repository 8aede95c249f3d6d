//! A node: the registries of the three actor kinds, a supervised consumer per shard
//! queue, the outbox relay, the deadline timer, the config watcher and the passivation
//! ticker, all under one shutdown signal.

use std::{sync::Arc, time::Duration};

use actix::{Arbiter, ArbiterHandle};
use merit_actors::{
    center::ConfigCenter, NftDomain, Outcome, ProposalDomain, RetryPolicy, Services, UserDomain,
};
use merit_mailbox::{ShardId, Transport};
use merit_messages::{ActorKind, Envelope};
use merit_storage::{GroupCommitter, Retention, Store};
use serde::Serialize;
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

use crate::{
    error::Result,
    ownership::{assign, record, run_ownership, Membership, Owned},
    registry::{Registry, RegistryStatus, Residency},
    service::{spawn_service, Dependency, RestartPolicy},
    timers::refresh_config,
    tree::{ServiceStatus, Tree},
};

mod wiring;

use wiring::{dependencies, Wiring};

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// This node's id.
    pub node_id: String,
    /// Shard queues per actor kind (must match the topology the transport declares).
    pub shards: u16,
    /// Unacked deliveries per shard consumer.
    pub prefetch: u16,
    /// Retry policy of actor turns.
    pub retry: RetryPolicy,
    /// Actor residency limits.
    pub residency: Residency,
    /// Restart policy of supervised services.
    pub restart: RestartPolicy,
    /// Arbiter threads the actors run on.
    pub arbiters: usize,
    /// Group-commit workers (concurrent transactions); 1 suits SQLite.
    pub commit_workers: usize,
    /// Most turns one group-commit transaction takes.
    pub commit_batch: usize,
    /// Most queued messages one actor applies in one turn.
    pub turn_batch: usize,
    /// How often the deadline timer and the config watcher look at the store.
    pub timer_interval: Duration,
    /// How long the inbox, the outbox and the notification logs keep rows.
    pub retention: Retention,
    /// How often the retention sweeper runs.
    pub sweep_interval: Duration,
    /// How often a clustered node reads the live nodes and rebalances its shards.
    pub rebalance_interval: Duration,
    /// How long a shard handed over waits for its in-flight turns before it is let go
    /// anyway (their deliveries then come again to the next owner).
    pub drain_limit: Duration,
}

/// The three registries.
pub struct Registries {
    /// UserActors.
    pub user: Registry<UserDomain>,
    /// ProposalActors.
    pub proposal: Registry<ProposalDomain>,
    /// NftActors.
    pub nft: Registry<NftDomain>,
    /// This node's events in and turn latencies, for the dashboard's charts.
    pub pulse: Arc<crate::pulse::Pulse>,
}

impl Registries {
    /// Routes to the actor `key` of `kind` a delivery traced by `span`.
    pub fn route(
        &self,
        kind: ActorKind,
        key: String,
        envelope: Arc<Envelope>,
        prior_attempts: u32,
        span: tracing::Span,
    ) -> oneshot::Receiver<Outcome> {
        match kind {
            ActorKind::User => self.user.route_in(key, envelope, prior_attempts, span),
            ActorKind::Proposal => self.proposal.route_in(key, envelope, prior_attempts, span),
            ActorKind::Nft => self.nft.route_in(key, envelope, prior_attempts, span),
        }
    }

    /// Each registry's status.
    pub fn status(&self) -> Vec<RegistryStatus> {
        vec![
            self.user.status(),
            self.proposal.status(),
            self.nft.status(),
        ]
    }

    fn passivate_idle(&self) -> usize {
        self.user.passivate_idle() + self.proposal.passivate_idle() + self.nft.passivate_idle()
    }

    fn inflight(&self) -> usize {
        self.status().iter().map(|s| s.inflight).sum()
    }
}

impl Registries {
    /// The three registries on `arbiters`, sharing one group committer.
    fn new(
        arbiters: &[Arbiter],
        store: &Store,
        services: &Services,
        options: &NodeOptions,
    ) -> Self {
        let handles: Arc<[ArbiterHandle]> = arbiters.iter().map(|a| a.handle()).collect();
        let committer =
            GroupCommitter::start(store.clone(), options.commit_workers, options.commit_batch);
        Self {
            user: registry(handles.clone(), store, services, options, &committer),
            proposal: registry(handles.clone(), store, services, options, &committer),
            nft: registry(handles, store, services, options, &committer),
            pulse: Arc::default(),
        }
    }
}

fn registry<D: merit_actors::Domain>(
    arbiters: Arc<[ArbiterHandle]>,
    store: &Store,
    services: &Services,
    options: &NodeOptions,
    committer: &GroupCommitter,
) -> Registry<D> {
    Registry::new(
        arbiters,
        store.clone(),
        services.clone(),
        options.retry,
        options.residency,
    )
    .with_committer(committer.clone())
    .with_turn_batch(options.turn_batch)
}

/// The node's state for `/ready`, the dashboard and tests.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// Node id.
    pub node_id: String,
    /// False when a service exceeded its restart intensity.
    pub healthy: bool,
    /// Each dependency and whether it is up.
    pub dependencies: Vec<(String, bool)>,
    /// The supervised services.
    pub services: Vec<ServiceStatus>,
    /// The actor registries.
    pub registries: Vec<RegistryStatus>,
    /// The active dynamic config version.
    pub config_version: u64,
    /// Hits, misses and invalidations per cache tier, and whether Redis is in use.
    pub cache: merit_storage::CacheStats,
    /// The shards this node owns and consumes.
    pub shards: ShardOwnership,
}

/// Which shards a node owns (see [`crate::ownership`]).
#[derive(Debug, Clone, Serialize)]
pub struct ShardOwnership {
    /// Every shard (no membership view: a single node, or none read yet).
    pub all: bool,
    /// The owned shards (`user.3`, ...); every shard when `all`.
    pub owned: Vec<String>,
    /// The live nodes the assignment was computed from.
    pub nodes: Vec<String>,
}

/// Reads a running node's status; cheap to clone.
#[derive(Clone)]
pub struct NodeProbe {
    node_id: String,
    registries: Arc<Registries>,
    services: Services,
    tree: Tree,
    deps: Vec<Arc<Dependency>>,
    owned: watch::Receiver<Owned>,
    shards: u16,
}

impl std::fmt::Debug for NodeProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeProbe")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeProbe {
    /// This node's events in and turn latencies so far (the dashboard's history samples
    /// them; nothing else needs them, so [`Self::status`] leaves them out).
    pub fn pulse(&self) -> crate::pulse::PulseSnapshot {
        self.registries.pulse.snapshot()
    }

    /// A snapshot of the node.
    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.node_id.clone(),
            healthy: self.tree.healthy(),
            dependencies: self
                .deps
                .iter()
                .map(|d| (d.name().to_string(), d.is_up()))
                .collect(),
            services: self.tree.snapshot(),
            registries: self.registries.status(),
            config_version: self.services.config.version(),
            cache: self.services.cache.stats(),
            shards: {
                let owned = self.owned.borrow();
                ShardOwnership {
                    all: owned.all,
                    owned: ActorKind::ALL
                        .into_iter()
                        .flat_map(|kind| (0..self.shards).map(move |index| ShardId { kind, index }))
                        .filter(|s| owned.contains(*s))
                        .map(|s| s.to_string())
                        .collect(),
                    nodes: owned.nodes.clone(),
                }
            },
        }
    }
}

/// A running node.
pub struct Node {
    options: NodeOptions,
    registries: Arc<Registries>,
    services: Services,
    tree: Tree,
    deps: Vec<Arc<Dependency>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    arbiters: Vec<Arbiter>,
    owned: watch::Receiver<Owned>,
    /// Publishes ownership for a node without a membership source (kept so it stays open).
    _owned_fixed: Option<watch::Sender<Owned>>,
}

impl Node {
    /// Starts a node that consumes every shard (a single node; with others on the same
    /// queues it is active where it subscribed first and waits as a standby elsewhere).
    /// Must run inside an actix `System` (the actors live on arbiters).
    pub async fn start(
        options: NodeOptions,
        store: Store,
        services: Services,
        transport: Arc<dyn Transport>,
    ) -> Result<Self> {
        Self::start_with(options, store, services, transport, None).await
    }

    /// Starts a node that consumes the shards it owns among the live nodes `membership`
    /// lists, and rebalances as nodes join and leave (see [`crate::ownership`]).
    pub async fn start_in_cluster(
        options: NodeOptions,
        store: Store,
        services: Services,
        transport: Arc<dyn Transport>,
        membership: Arc<dyn Membership>,
    ) -> Result<Self> {
        Self::start_with(options, store, services, transport, Some(membership)).await
    }

    async fn start_with(
        options: NodeOptions,
        store: Store,
        services: Services,
        transport: Arc<dyn Transport>,
        membership: Option<Arc<dyn Membership>>,
    ) -> Result<Self> {
        let center = ConfigCenter::new(store.clone());
        // The stored config before the first message, so no turn runs on the built-in one
        // by mistake; the watcher keeps it current.
        refresh_config(&center, &services.config).await?;
        let arbiters: Vec<Arbiter> = (0..options.arbiters.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let registries = Arc::new(Registries::new(&arbiters, &store, &services, &options));
        let (database, broker) = dependencies(&store, &transport);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let tree = Tree::default();

        transport.declare().await?;

        let ownership = Ownership::start(membership, &options, &shutdown_rx).await;
        let mut tasks: Vec<JoinHandle<()>> = ownership.task.into_iter().collect();
        let wiring = Wiring {
            options: &options,
            store: &store,
            transport: &transport,
            registries: &registries,
            owned: &ownership.owned,
            center: &center,
            services: &services,
            database: &database,
            broker: &broker,
        };
        for service in wiring.services() {
            tasks.push(spawn_service(
                tree.clone(),
                service.name,
                options.restart,
                service.needs,
                shutdown_rx.clone(),
                service.run,
            ));
        }
        tasks.push(spawn_passivation(
            registries.clone(),
            options.residency.idle,
            shutdown_rx,
        ));
        tracing::info!(node_id = %options.node_id, shards = options.shards, "node started");
        Ok(Self {
            options,
            registries,
            services,
            tree,
            deps: vec![database, broker],
            shutdown,
            tasks,
            arbiters,
            owned: ownership.owned,
            _owned_fixed: ownership.fixed,
        })
    }

    /// The registries (for routing from the API and for tests).
    pub fn registries(&self) -> &Arc<Registries> {
        &self.registries
    }

    /// The supervision tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// A snapshot of the node.
    pub fn status(&self) -> NodeStatus {
        self.probe().status()
    }

    /// A cloneable handle that reads the node's status while something else owns the node
    /// (the API, the dashboard).
    pub fn probe(&self) -> NodeProbe {
        NodeProbe {
            node_id: self.options.node_id.clone(),
            registries: self.registries.clone(),
            services: self.services.clone(),
            tree: self.tree.clone(),
            deps: self.deps.clone(),
            owned: self.owned.clone(),
            shards: self.options.shards,
        }
    }

    /// Stops consuming, lets in-flight turns finish (up to `grace`), then stops the actors.
    /// Deliveries not finished by then are redelivered by the broker.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.registries.inflight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for arbiter in self.arbiters {
            arbiter.stop();
            let _ = arbiter.join();
        }
        tracing::info!(node_id = %self.options.node_id, "node stopped");
    }
}

/// The shards a starting node owns.
struct Ownership {
    owned: watch::Receiver<Owned>,
    /// The sender of a node without a membership source (kept so the channel stays open).
    fixed: Option<watch::Sender<Owned>>,
    /// With a membership source: the task that rebalances as nodes join and leave.
    task: Option<JoinHandle<()>>,
}

impl Ownership {
    /// The first assignment, read before any consumer starts so a joining node subscribes
    /// to its own share only; without a view (or a membership source) it owns all.
    async fn start(
        membership: Option<Arc<dyn Membership>>,
        options: &NodeOptions,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let (owned_tx, owned) = watch::channel(Owned::everything());
        record(&Owned::everything(), options.shards);
        let Some(membership) = membership else {
            return Self {
                owned,
                fixed: Some(owned_tx),
                task: None,
            };
        };
        let first = tokio::time::timeout(Duration::from_secs(5), membership.live_nodes());
        if let Ok(Ok(nodes)) = first.await {
            owned_tx.send_replace(assign(&options.node_id, &nodes, options.shards));
        }
        let task = tokio::spawn(run_ownership(
            membership,
            options.node_id.clone(),
            options.shards,
            options.rebalance_interval,
            owned_tx,
            shutdown.clone(),
        ));
        Self {
            owned,
            fixed: None,
            task: Some(task),
        }
    }
}

/// The passivation ticker: every quarter of the idle limit (within 100 ms – 30 s), stops
/// the actors idle for longer. Not supervised: it cannot fail.
fn spawn_passivation(
    registries: Arc<Registries>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let every = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {
                    let n = registries.passivate_idle();
                    if n > 0 {
                        tracing::debug!(passivated = n, "idle actors passivated");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    })
}
