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

use crate::{
    auth::Credentials, cached::Snapshot, discovery::Discovery, notify::NotificationHub,
    tickets::StreamTickets,
};

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
    /// Requests per second one authenticated user (JWT subject) may make, from any address.
    pub user_rate_per_sec: u32,
    /// Requests one user may make in a burst.
    pub user_rate_burst: u32,
    /// Sign-in requests (`/api/v1/auth/*`) per second one client address may make.
    pub auth_rate_per_sec: u32,
    /// Sign-in requests one client address may make in a burst.
    pub auth_rate_burst: u32,
    /// Reverse proxies (IP addresses and CIDR blocks) whose `Forwarded` /
    /// `X-Forwarded-For` names the client; from anyone else those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded`.
    pub forwarded_header: String,
    /// How long one WebSocket send may wait on the client before the session is closed.
    pub ws_send_timeout: Duration,
    /// WebSocket sessions one user may hold on this node.
    pub ws_max_sessions_per_user: usize,
    /// Sign-In with Ethereum.
    pub siwe: SiweOptions,
}

/// What a Sign-In with Ethereum message must match, and what a sign-in returns.
#[derive(Debug, Clone)]
pub struct SiweOptions {
    /// The domain messages must name (an RFC 3986 authority, `merit.example`).
    pub domain: String,
    /// Origins (`scheme://authority`) a message's URI may have.
    pub origins: Vec<String>,
    /// merit's chain id.
    pub chain_id: u64,
    /// How long an issued nonce is accepted.
    pub nonce_ttl: Duration,
    /// Lifetime of the user token a sign-in returns (capped at the message's expiry).
    pub token_ttl: Duration,
    /// Clock skew tolerated on `Issued At` and `Not Before`.
    pub skew: Duration,
}

impl SiweOptions {
    /// For `domain`, with `http://` and `https://` + domain as the allowed origins.
    pub fn for_domain(domain: &str, chain_id: u64) -> Self {
        let domain = domain.to_ascii_lowercase();
        Self {
            origins: vec![format!("http://{domain}"), format!("https://{domain}")],
            domain,
            chain_id,
            nonce_ttl: Duration::from_secs(300),
            token_ttl: Duration::from_secs(3600),
            skew: Duration::from_secs(60),
        }
    }
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
            user_rate_per_sec: 200,
            user_rate_burst: 400,
            auth_rate_per_sec: 2,
            auth_rate_burst: 20,
            trusted_proxies: Vec::new(),
            forwarded_header: "x-forwarded-for".to_string(),
            ws_send_timeout: Duration::from_secs(5),
            ws_max_sessions_per_user: 8,
            siwe: SiweOptions::for_domain("127.0.0.1:8080", 31337),
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
    /// What the node keeps for the HTTP side at run time: the `/ready` and `/metrics`
    /// snapshots and the dashboard's stream tickets. `Guards::default()`.
    pub guards: Arc<Guards>,
}

/// Run-time state of the HTTP side's guards. Debug shows no ticket.
#[derive(Debug)]
pub struct Guards {
    pub(crate) ready: Snapshot<crate::health::Readiness>,
    pub(crate) metrics: Snapshot<String>,
    pub(crate) tickets: StreamTickets,
    pub(crate) history: crate::history::History,
}

impl Guards {
    /// Snapshots reused for `every` (one second in a node).
    pub fn new(every: Duration) -> Self {
        Self {
            ready: Snapshot::new(every),
            metrics: Snapshot::new(every),
            tickets: StreamTickets::default(),
            history: crate::history::History::default(),
        }
    }
}

impl Default for Guards {
    fn default() -> Self {
        Self::new(Duration::from_secs(1))
    }
}
