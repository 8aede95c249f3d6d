//! Harness: one node on its own database and vhost.

use std::{fmt::Debug, future::Future, sync::Arc, time::Duration};

use merit_mailbox::{Outgoing, RabbitTransport, Topology, Transport};
use merit_messages::Envelope;
use merit_storage::{
    entities::outbox,
    sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter},
    Store,
};
use merit_supervisors::Node;

use crate::common::{self, TestDb, Vhost};

pub(crate) const SHARDS: u16 = 2;

pub(crate) async fn rabbit(vhost: &Vhost) -> Arc<RabbitTransport> {
    let t = RabbitTransport::connect(
        &vhost.url,
        Topology {
            prefix: String::new(),
            shards: SHARDS,
        },
    )
    .await
    .expect("connect to RabbitMQ");
    t.declare().await.expect("declare the topology");
    Arc::new(t)
}

/// A node on a fresh PostgreSQL database and a fresh vhost, and a producer connection.
pub(crate) struct Community {
    pub(crate) db: TestDb,
    pub(crate) store: Store,
    pub(crate) vhost: Vhost,
    pub(crate) producer: Arc<RabbitTransport>,
    pub(crate) node: Node,
}

impl Community {
    pub(crate) async fn start(name: &str) -> Self {
        let (db, store, vhost) = common::pg_and_vhost().await;
        let producer = rabbit(&vhost).await;
        let node = common::start_node(name, SHARDS, store.clone(), rabbit(&vhost).await).await;
        Self {
            db,
            store,
            vhost,
            producer,
            node,
        }
    }

    /// Publishes `envs` in order, `copies` times over (the whole list, then the whole list
    /// again): each copy has the same event id.
    pub(crate) async fn publish(&self, envs: &[Envelope], copies: usize) {
        let batch: Vec<Outgoing> = (0..copies)
            .flat_map(|_| envs.iter().map(Outgoing::from_envelope))
            .collect();
        self.producer.publish(batch).await.expect("publish");
    }

    /// Nothing left to do: no ready message in any queue, no unpublished outbox row and no
    /// turn in flight — three times in a row, 200 ms apart.
    pub(crate) async fn wait_quiescent(&self) {
        let mut calm = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while calm < 3 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node did not become quiescent"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            let ready: u64 = self
                .producer
                .queue_depths()
                .await
                .expect("queue depths")
                .iter()
                .map(|(_, n)| n)
                .sum();
            let unsent = outbox::Entity::find()
                .filter(outbox::Column::PublishedAt.is_null())
                .count(self.store.db())
                .await
                .expect("count outbox");
            let inflight: usize = self
                .node
                .status()
                .registries
                .iter()
                .map(|r| r.inflight)
                .sum();
            calm = if ready == 0 && unsent == 0 && inflight == 0 {
                calm + 1
            } else {
                0
            };
        }
    }

    pub(crate) async fn stop(self) {
        self.node.shutdown(Duration::from_secs(5)).await;
        drop(self.producer);
        self.vhost.delete();
        self.db.cleanup().await;
    }
}

/// Polls `read` every 100 ms until it returns `expected`; after `secs` it fails with the
/// last value read next to the expected one.
pub(crate) async fn settles<T, F, Fut>(secs: u64, what: &str, mut read: F, expected: &T)
where
    T: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = read().await;
        if &got == expected {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            assert_eq!(&got, expected, "timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
