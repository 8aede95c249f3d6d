//! The HTTP side of a node: where it listens and whom it trusts, the API server, the
//! node's registration heartbeat and the notification fan-out.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use merit_api::{ApiOptions, ApiState, Credentials, Discovery, NodeInfo};
use merit_config::Settings;
use merit_mailbox::Transport;
use merit_storage::Store;
use merit_supervisors::Node;
use tokio::{sync::watch, task::JoinHandle};

use super::cluster_of;

/// Where a node's HTTP side listens, whom it trusts and whether it joins the other
/// nodes. `merit serve` takes all of it from the settings; `merit bench` serves the same
/// API alone, on a loopback port, with a secret of its own.
pub(crate) struct Exposure {
    /// Bound by the caller, so it may ask for port 0.
    pub(crate) listener: std::net::TcpListener,
    /// `MERIT_METRICS_ADDR`: `/metrics` there instead of on `listener`.
    pub(crate) metrics_listener: Option<std::net::TcpListener>,
    /// What user tokens and the admin token are checked against.
    pub(crate) credentials: Credentials,
    /// Whether notifications travel to and from the other nodes (`merit.notify`, with
    /// RabbitMQ) and the node registers where they look (Redis, when configured). If not,
    /// its notifications reach only its own sessions and it registers in its own database.
    pub(crate) clustered: bool,
    /// Where the node registers: the one its shard ownership reads (`merit serve`), or
    /// `None` for the database's `nodes` table.
    pub(crate) discovery: Option<Discovery>,
}

impl Exposure {
    /// `MERIT_HTTP_ADDR`, `MERIT_JWT_SECRET`, `MERIT_ADMIN_TOKEN`, clustered.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self> {
        let listener = std::net::TcpListener::bind(settings.http_addr)
            .with_context(|| format!("listen on {}", settings.http_addr))?;
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("listen on {addr} (MERIT_METRICS_ADDR)"))?,
            ),
            None => None,
        };
        Ok(Self {
            listener,
            metrics_listener,
            credentials: Credentials::new(
                settings.jwt_secret.expose_secret().as_bytes(),
                settings.admin_token.expose_secret().as_bytes(),
            ),
            clustered: true,
            discovery: None,
        })
    }
}

/// The HTTP side's limits and trust from the settings; the Sign-In with Ethereum domain
/// defaults to the address the node listens on.
pub(crate) fn api_options(settings: &Settings, address: std::net::SocketAddr) -> ApiOptions {
    let http = &settings.http;
    let domain = http
        .siwe_domain
        .clone()
        .unwrap_or_else(|| address.to_string());
    let mut siwe = merit_api::SiweOptions::for_domain(&domain, settings.chain.chain_id);
    if !http.siwe_origins.is_empty() {
        siwe.origins = http.siwe_origins.clone();
    }
    siwe.token_ttl = Duration::from_secs(http.login_ttl_secs);
    ApiOptions {
        rate_per_sec: http.rate_per_sec,
        rate_burst: http.rate_burst,
        user_rate_per_sec: http.user_rate_per_sec,
        user_rate_burst: http.user_rate_burst,
        trusted_proxies: http.trusted_proxies.clone(),
        forwarded_header: http.forwarded_header.clone(),
        ws_send_timeout: http.ws_send_timeout(),
        ws_max_sessions_per_user: http.ws_max_sessions_per_user,
        siwe,
        ..ApiOptions::default()
    }
}

/// The HTTP side of a node: the API server, node registration and the notification
/// fan-out.
pub(crate) struct Api {
    /// Where it listens.
    pub(crate) address: std::net::SocketAddr,
    server: actix_web::dev::ServerHandle,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Api {
    /// Serves the API of `node` as `exposure` says; `chain` is the node's chain side, when
    /// it runs one (sagas, chain status and the on-demand sync answer only then).
    pub(crate) async fn start(
        settings: &Settings,
        exposure: Exposure,
        store: &Store,
        transport: Arc<dyn Transport>,
        node: &Node,
        chain: Option<&crate::chain_runtime::ChainRuntime>,
        hub: merit_api::NotificationHub,
    ) -> Result<Self> {
        let Exposure {
            listener,
            metrics_listener,
            credentials,
            clustered,
            discovery,
        } = exposure;
        let address = listener.local_addr()?;
        let options = api_options(settings, address);
        let (shutdown, stop) = watch::channel(false);
        let mut tasks = Vec::new();
        if let (true, Some(url)) = (clustered, &settings.amqp_url) {
            tasks.push(tokio::spawn(
                hub.clone()
                    .run_fanout(url.expose().to_string(), stop.clone()),
            ));
        }
        let discovery = discovery.unwrap_or_else(|| Discovery::Store(store.clone()));
        let started_at = chrono::Utc::now();
        tasks.push(heartbeat(
            settings,
            node,
            address,
            started_at,
            &discovery,
            options.node_ttl,
            stop,
        ));
        let state = ApiState {
            node_id: settings.node_id.clone(),
            version: VERSION,
            started_at,
            advertised: address.to_string(),
            store: store.clone(),
            transport,
            probe: node.probe(),
            sagas: chain.map(|c| c.executor()),
            center: merit_actors::center::ConfigCenter::new(store.clone()),
            chain: chain.map(|c| c.access()),
            hub,
            discovery,
            credentials,
            options,
            broker_is_rabbitmq: settings.amqp_url.is_some(),
            redis_configured: settings.redis_url.is_some(),
            metrics: merit_api::install_recorder(),
            guards: Default::default(),
        };
        let (handle, server) = run_server(listener, metrics_listener, state)?;
        tasks.push(server);
        Ok(Self {
            address,
            server: handle,
            shutdown,
            tasks,
        })
    }

    /// Stops serving (in-flight requests finish), deregisters the node, stops the fan-out.
    pub(crate) async fn stop(self) {
        self.server.stop(true).await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// This build's version, as the node registers and reports it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers the node with `discovery`, refreshing its entry (health, owned shards) while
/// it lives: shard ownership and the cluster view are computed from these entries.
/// Deregisters it on `stop`.
fn heartbeat(
    settings: &Settings,
    node: &Node,
    address: std::net::SocketAddr,
    started_at: chrono::DateTime<chrono::Utc>,
    discovery: &Discovery,
    ttl: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let probe = node.probe();
    let node_id = settings.node_id.clone();
    let cluster = cluster_of(settings);
    let advertised = address.to_string();
    let info = move || {
        let status = probe.status();
        NodeInfo {
            node_id: node_id.clone(),
            address: advertised.clone(),
            version: VERSION.to_string(),
            started_at,
            heartbeat_at: chrono::Utc::now(),
            healthy: status.healthy,
            shards: status.shards.owned.len() as u32,
            owned: status.shards.owned,
            cluster: cluster.clone(),
        }
    };
    tokio::spawn(discovery.clone().run_heartbeat(info, ttl, stop))
}

/// Starts the HTTP server on `listener` (and `/metrics` on `metrics_listener`, when
/// given); returns its handle and the task that runs it until it stops.
fn run_server(
    listener: std::net::TcpListener,
    metrics_listener: Option<std::net::TcpListener>,
    state: ApiState,
) -> Result<(actix_web::dev::ServerHandle, JoinHandle<()>)> {
    let metrics_address = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let server = merit_api::serve_with_metrics(listener, metrics_listener, state)
        .context("start the HTTP server")?;
    if let Some(metrics) = metrics_address {
        tracing::info!(%metrics, "/metrics is served on the metrics listener only");
    }
    let handle = server.handle();
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    Ok((handle, task))
}
