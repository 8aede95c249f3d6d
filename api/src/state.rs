//! What every handler shares: the node's store, transport, status probe, saga executor,
//! config center, chain, notification hub, discovery and credentials.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use merit_actors::center::ConfigCenter;
use merit_chain::{Chain, StatusHandle};
use merit_mailbox::Transport;
use merit_sagas::SagaExecutor;
use merit_storage::Store;
use merit_supervisors::NodeProbe;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{auth::Credentials, discovery::Discovery, notify::NotificationHub};

/// Limits and timings of the HTTP side.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Requests per second one client (IP address) may make on average.
    pub rate_per_sec: u32,
    /// Requests one client may make in a burst.
    pub rate_burst: u32,
    /// Notifications buffered per WebSocket client before it is dropped as too slow.
    pub ws_buffer: usize,
    /// How often a WebSocket client is pinged; one silent for three pings is dropped.
    pub ws_heartbeat: Duration,
    /// How often a WebSocket session re-reads the user's log as a backstop for a missed
    /// live message.
    pub ws_catch_up: Duration,
    /// How long a node stays listed without a heartbeat.
    pub node_ttl: Duration,
    /// HTTP worker threads.
    pub workers: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            rate_per_sec: 200,
            rate_burst: 400,
            ws_buffer: 256,
            ws_heartbeat: Duration::from_secs(10),
            ws_catch_up: Duration::from_secs(15),
            node_ttl: Duration::from_secs(15),
            workers: 2,
        }
    }
}

/// The chain as the API sees it: for readiness, checkpoint lag and the on-demand full sync.
#[derive(Clone)]
pub struct ChainAccess {
    /// The chain adapter.
    pub chain: Arc<dyn Chain>,
    /// Confirmation depth.
    pub confirmations: u64,
    /// The listener's status.
    pub listener: Option<StatusHandle>,
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// This node's id.
    pub node_id: String,
    /// merit's version.
    pub version: &'static str,
    /// When the node started.
    pub started_at: DateTime<Utc>,
    /// Address the API is reachable at (as registered for discovery).
    pub advertised: String,
    /// The database.
    pub store: Store,
    /// The mailbox transport (publishing, queue depths, dead letters).
    pub transport: Arc<dyn Transport>,
    /// The node's status.
    pub probe: NodeProbe,
    /// The saga executor, when the node runs one.
    pub sagas: Option<SagaExecutor>,
    /// The dynamic config center.
    pub center: ConfigCenter,
    /// The chain, when the node runs one.
    pub chain: Option<ChainAccess>,
    /// Live notification delivery.
    pub hub: NotificationHub,
    /// Service discovery.
    pub discovery: Discovery,
    /// What credentials are checked against.
    pub credentials: Credentials,
    /// Limits.
    pub options: ApiOptions,
    /// Whether the transport is RabbitMQ (named so in `/ready`).
    pub broker_is_rabbitmq: bool,
    /// Whether Redis is configured (then `/ready` reports it).
    pub redis_configured: bool,
    /// Renders `/metrics`.
    pub metrics: Option<PrometheusHandle>,
}
