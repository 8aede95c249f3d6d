//! Harness: a test's database, vhost and transport.

use std::sync::Arc;

use merit_mailbox::RabbitTransport;
use merit_storage::Store;

use crate::common::{self, TestDb, Vhost};

/// A fresh migrated PostgreSQL database and vhost, and a transport on it with `shards`
/// shards per kind.
pub(crate) async fn world(shards: u16) -> (TestDb, Store, Vhost, Arc<RabbitTransport>) {
    let (db, store, vhost) = common::pg_and_vhost().await;
    let transport = rabbit(&vhost, shards).await;
    (db, store, vhost, transport)
}

pub(crate) async fn rabbit(vhost: &Vhost, shards: u16) -> Arc<RabbitTransport> {
    Arc::new(common::declared_transport(&vhost.url, shards).await)
}
