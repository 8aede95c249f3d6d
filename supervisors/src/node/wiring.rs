//! What a node's supervised services are built from: its dependencies (the database and
//! the broker), and one [`ServiceSpec`] per service — a consumer per shard queue, then
//! the background services of the broker and the store.

use std::{future::Future, sync::Arc};

use futures::future::BoxFuture;
use merit_actors::{center::ConfigCenter, Services};
use merit_mailbox::{ShardId, Transport};
use merit_messages::ActorKind;
use merit_storage::Store;
use tokio::sync::watch;

use super::{NodeOptions, Registries};
use crate::{
    dead_letters::run_recorder,
    error::Result,
    ownership::Owned,
    relay::run_relay,
    service::Dependency,
    shard::consume_shard,
    timers::{run_config_watcher, run_deadline_timer, run_retention_sweeper},
};

/// The node's dependencies: the database and the broker, each up while its probe answers.
pub(super) fn dependencies(
    store: &Store,
    transport: &Arc<dyn Transport>,
) -> (Arc<Dependency>, Arc<Dependency>) {
    let database = {
        let store = store.clone();
        Dependency::new("database", move || {
            let store = store.clone();
            async move { store.ping().await.is_ok() }
        })
    };
    let broker = {
        let transport = transport.clone();
        Dependency::new("broker", move || {
            let transport = transport.clone();
            async move { transport.is_connected().await }
        })
    };
    (database, broker)
}

/// How a supervised service is (re)started: given the shutdown signal, one run of it.
type MakeService = Box<dyn FnMut(watch::Receiver<bool>) -> BoxFuture<'static, Result<()>> + Send>;

/// One supervised service of a node: its name in the tree, the dependencies it waits for,
/// and how to start it.
pub(super) struct ServiceSpec {
    pub(super) name: String,
    pub(super) needs: Vec<Arc<Dependency>>,
    pub(super) run: MakeService,
}

impl ServiceSpec {
    fn new<F, Fut>(name: impl Into<String>, needs: &[&Arc<Dependency>], mut run: F) -> Self
    where
        F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            needs: needs.iter().map(|d| Arc::clone(d)).collect(),
            run: Box::new(move |stop| Box::pin(run(stop))),
        }
    }
}

/// What a node's services are built from.
pub(super) struct Wiring<'a> {
    pub(super) options: &'a NodeOptions,
    pub(super) store: &'a Store,
    pub(super) transport: &'a Arc<dyn Transport>,
    pub(super) registries: &'a Arc<Registries>,
    pub(super) owned: &'a watch::Receiver<Owned>,
    pub(super) center: &'a ConfigCenter,
    pub(super) services: &'a Services,
    pub(super) database: &'a Arc<Dependency>,
    pub(super) broker: &'a Arc<Dependency>,
}

impl Wiring<'_> {
    /// Every supervised service of the node, in the order they start: a consumer per
    /// shard queue, then the background services of the broker and the store.
    pub(super) fn services(&self) -> Vec<ServiceSpec> {
        let (database, broker) = (self.database, self.broker);
        let shards = ActorKind::ALL
            .into_iter()
            .flat_map(|kind| (0..self.options.shards).map(move |index| ShardId { kind, index }));
        let mut all: Vec<ServiceSpec> = shards.map(|shard| self.consumer(shard)).collect();
        let (store, transport) = (self.store, self.transport);
        let every = self.options.timer_interval;
        all.extend([
            ServiceSpec::new("unrouted-mover", &[broker], {
                let transport = transport.clone();
                move |mut stop| {
                    let transport = transport.clone();
                    async move {
                        let stopped = Box::pin(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        });
                        Ok(transport.run_unrouted_mover(stopped).await?)
                    }
                }
            }),
            ServiceSpec::new("outbox-relay", &[broker, database], {
                let (store, transport) = (store.clone(), transport.clone());
                move |stop| run_relay(store.clone(), transport.clone(), stop)
            }),
            ServiceSpec::new("dead-letter-recorder", &[broker, database], {
                let (store, transport) = (store.clone(), transport.clone());
                move |stop| run_recorder(store.clone(), transport.clone(), stop)
            }),
            ServiceSpec::new("deadline-timer", &[database], {
                let store = store.clone();
                move |stop| run_deadline_timer(store.clone(), every, stop)
            }),
            ServiceSpec::new("retention-sweeper", &[database], {
                let (store, retention) = (store.clone(), self.options.retention);
                let sweep = self.options.sweep_interval;
                move |stop| run_retention_sweeper(store.clone(), retention, sweep, stop)
            }),
            ServiceSpec::new("config-watcher", &[database], {
                let (center, handle) = (self.center.clone(), self.services.config.clone());
                move |stop| run_config_watcher(center.clone(), handle.clone(), every, stop)
            }),
        ]);
        all
    }

    /// The consumer of `shard`'s queue.
    fn consumer(&self, shard: ShardId) -> ServiceSpec {
        let (transport, registries) = (self.transport.clone(), self.registries.clone());
        let (prefetch, drain_limit) = (self.options.prefetch, self.options.drain_limit);
        let owned = self.owned.clone();
        ServiceSpec::new(
            format!("consumer.{shard}"),
            &[self.broker, self.database],
            move |stop| {
                consume_shard(
                    transport.clone(),
                    shard,
                    prefetch,
                    drain_limit,
                    registries.clone(),
                    owned.clone(),
                    stop,
                )
            },
        )
    }
}
