//! `/health` (the process answers), `/ready` (every component this node needs works; 503
//! naming what does not; 200 naming the degraded parts it absorbs) and `/metrics`.
//!
//! `/ready` and `/metrics` are open to anyone and never rate-limited (an orchestrator and
//! a scraper poll them), so both answer from a snapshot refreshed at most once a second,
//! with one refresh in flight however many callers wait: a flood costs the database,
//! the broker and the chain RPC one probe a second, not one per request.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use merit_supervisors::ServiceState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::ApiState;

/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `alive`.
    pub status: String,
    /// The node answering.
    pub node_id: String,
    /// merit version.
    pub version: String,
}

/// One component's readiness.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Component {
    /// `database`, `rabbitmq` (or `broker` in-process), `redis`, `chain_rpc`, `consumers`,
    /// `relay`, `chain_listener`.
    pub name: String,
    /// Whether it works.
    pub ok: bool,
    /// Why not, or what it reports.
    pub detail: Option<String>,
}

/// Readiness of every component.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// Every component the node cannot serve without works: it can take traffic.
    pub ready: bool,
    /// Those that do not (database, broker, consumers, relay), by name: a 503.
    pub failing: Vec<String>,
    /// Components that do not work but whose loss the node absorbs (Redis: the cache
    /// serves from memory and the database; the chain RPC and listener: sagas and chain
    /// events wait and resume), by name. Still a 200, so a Redis restart does not empty
    /// every load balancer.
    pub degraded: Vec<String>,
    /// Every component.
    pub components: Vec<Component>,
}

/// Components whose loss a node absorbs: `/ready` names them as degraded, not failing.
const ABSORBED: [&str; 3] = ["redis", "chain_rpc", "chain_listener"];

/// The process is alive.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
#[get("/health")]
pub(crate) async fn health(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "alive".to_string(),
        node_id: state.node_id.clone(),
        version: state.version.to_string(),
    })
}

fn component(name: &str, ok: bool, detail: Option<String>) -> Component {
    Component {
        name: name.to_string(),
        ok,
        detail,
    }
}

/// A probe's failure as `/ready` (open to anyone) shows it: fixed text. The error itself
/// (which can hold hostnames, URLs with keys, SQL) goes to the log.
fn unanswered(name: &str, cause: &dyn std::fmt::Display) -> String {
    tracing::warn!(component = name, error = %cause, "a readiness probe failed");
    "unreachable; see the node's log".to_string()
}

async fn probe<F: std::future::Future<Output = Result<(), String>>>(name: &str, f: F) -> Component {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(())) => component(name, true, None),
        Ok(Err(e)) => component(name, false, Some(e)),
        Err(_) => component(
            name,
            false,
            Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        ),
    }
}

fn services_ok(status: &merit_supervisors::NodeStatus, prefix: &str) -> (bool, Option<String>) {
    let bad: Vec<String> = status
        .services
        .iter()
        .filter(|s| s.name.starts_with(prefix))
        .filter(|s| !matches!(s.state, ServiceState::Running))
        .map(|s| format!("{} is {:?}", s.name, s.state))
        .collect();
    if bad.is_empty() {
        (true, None)
    } else {
        (false, Some(bad.join("; ")))
    }
}

pub(crate) async fn readiness(state: &ApiState) -> Readiness {
    ::metrics::counter!("merit_ready_probes_total").increment(1);
    let mut components = Vec::new();
    components.push(
        probe("database", async {
            state
                .store
                .ping()
                .await
                .map_err(|e| unanswered("database", &e))
        })
        .await,
    );
    let broker = if state.broker_is_rabbitmq {
        "rabbitmq"
    } else {
        "broker"
    };
    components.push(
        probe(broker, async {
            if state.transport.is_connected().await {
                Ok(())
            } else {
                Err("not connected".to_string())
            }
        })
        .await,
    );
    let status = state.probe.status();
    if state.redis_configured {
        let up = status.cache.redis_up;
        components.push(component(
            "redis",
            up,
            (!up).then(|| "unreachable: the cache serves from L1 and the database".to_string()),
        ));
    }
    if let Some(chain) = &state.chain {
        components.push(
            probe("chain_rpc", async {
                chain
                    .chain
                    .head_block()
                    .await
                    .map(|_| ())
                    .map_err(|e| unanswered("chain_rpc", &e))
            })
            .await,
        );
        if let Some(listener) = &chain.listener {
            let s = listener.get();
            components.push(component(
                "chain_listener",
                s.last_error.is_none(),
                // Its error text can hold the RPC URL (and a key in it): the listener logs
                // it; the open probe only says there is one.
                s.last_error
                    .as_ref()
                    .map(|_| "failing; see the node's log".to_string())
                    .or_else(|| s.lag.map(|lag| format!("lag {lag} blocks"))),
            ));
        }
    }
    let (ok, detail) = services_ok(&status, "consumer.");
    components.push(component("consumers", ok, detail));
    let (ok, detail) = services_ok(&status, "outbox-relay");
    components.push(component("relay", ok, detail));
    let (degraded, failing): (Vec<String>, Vec<String>) = components
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.clone())
        .partition(|name| ABSORBED.contains(&name.as_str()));
    Readiness {
        ready: failing.is_empty(),
        failing,
        degraded,
        components,
    }
}

/// Every component works (200), or not (503 naming the failing ones).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready (`degraded` names absorbed outages: Redis, the chain RPC)", body = Readiness),
        (status = 503, description = "Not ready; `failing` names the components", body = Readiness),
    ))]
#[get("/ready")]
pub(crate) async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let report = state.guards.ready.get(|| readiness(&state)).await;
    if report.ready {
        HttpResponse::Ok().json(&*report)
    } else {
        HttpResponse::ServiceUnavailable().json(&*report)
    }
}

/// Prometheus metrics (a snapshot at most a second old). Served on the public listener
/// unless a separate metrics listener is configured (`MERIT_METRICS_ADDR`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[get("/metrics")]
pub(crate) async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(
            state
                .guards
                .metrics
                .get(|| crate::metrics::render(&state))
                .await
                .to_string(),
        )
}
