//! Harness: a transport on a test's vhost.

use std::sync::Arc;

use merit_mailbox::RabbitTransport;

use crate::common::{self, Vhost};

pub(crate) async fn rabbit(vhost: &Vhost, shards: u16) -> Arc<RabbitTransport> {
    Arc::new(common::declared_transport(&vhost.url, shards).await)
}
