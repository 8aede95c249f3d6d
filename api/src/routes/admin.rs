//! Operators' view of the cluster: live nodes, this node's supervision tree, queue
//! depths, the overview the dashboard renders, and the on-demand full sync.

use actix_web::{get, post, web, HttpResponse};
use merit_sagas::SagaState;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    auth::Admin,
    discovery::NodeInfo,
    error::{ApiError, ErrorBody, Result},
    state::ApiState,
};

/// The live nodes.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeList {
    /// Nodes with a heartbeat younger than the TTL, by id.
    pub items: Vec<NodeInfo>,
    /// The TTL, seconds.
    pub ttl_secs: u64,
}

/// A queue and its ready messages.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QueueDepth {
    /// Queue name.
    pub name: String,
    /// Messages ready (not in flight).
    pub ready: u64,
}

/// Everything the dashboard shows, in one read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Overview {
    /// The node answering.
    pub node_id: String,
    /// merit version.
    pub version: String,
    /// The dynamic config version active on this node.
    pub config_version: u64,
    /// Live nodes.
    pub nodes: Vec<NodeInfo>,
    /// This node's supervision tree, registries, dependencies and cache.
    #[schema(value_type = Object)]
    pub status: serde_json::Value,
    /// Mailbox queue depths.
    pub queues: Vec<QueueDepth>,
    /// Sagas per state.
    #[schema(value_type = Object)]
    pub sagas: serde_json::Value,
    /// Dead letters waiting.
    pub dlq_total: u64,
    /// WebSocket sessions on this node.
    pub ws_sessions: usize,
    /// The chain listener, when this node runs one.
    #[schema(value_type = Option<Object>)]
    pub chain: Option<serde_json::Value>,
}

/// The nodes of `me`'s cluster (the same RabbitMQ vhost): deployments that share a Redis
/// or a database see only their own nodes. All of them while `me` is not registered yet.
fn same_cluster(me: &str, nodes: Vec<NodeInfo>) -> Vec<NodeInfo> {
    let Some(cluster) = nodes
        .iter()
        .find(|n| n.node_id == me)
        .map(|n| n.cluster.clone())
    else {
        return nodes;
    };
    nodes.into_iter().filter(|n| n.cluster == cluster).collect()
}

pub(crate) async fn overview(state: &ApiState) -> Overview {
    let status = state.probe.status();
    let nodes = same_cluster(
        &state.node_id,
        state
            .discovery
            .live(state.options.node_ttl)
            .await
            .unwrap_or_default(),
    );
    let depths = state.transport.queue_depths().await.unwrap_or_default();
    let dlq_total = crate::routes::dlq::dlq_total(state).await.unwrap_or(0);
    let queues = depths
        .into_iter()
        .map(|(name, ready)| QueueDepth { name, ready })
        .collect();
    let sagas = match &state.sagas {
        Some(executor) => executor
            .counts(None)
            .await
            .map(|counts| {
                let mut all: serde_json::Map<String, serde_json::Value> = SagaState::ALL
                    .iter()
                    .map(|s| (s.to_string(), 0.into()))
                    .collect();
                for (s, n) in counts {
                    all.insert(s.to_string(), n.into());
                }
                serde_json::Value::Object(all)
            })
            .unwrap_or_default(),
        None => serde_json::json!({}),
    };
    Overview {
        node_id: state.node_id.clone(),
        version: state.version.to_string(),
        config_version: status.config_version,
        nodes,
        status: status_json(&status),
        queues,
        sagas,
        dlq_total,
        ws_sessions: state.hub.sessions(),
        chain: state
            .chain
            .as_ref()
            .and_then(|c| c.listener.as_ref())
            .map(|l| listener_json(&l.get())),
    }
}

/// The live nodes (service discovery).
#[utoipa::path(get, path = "/api/v1/nodes", tag = "operations",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Live nodes", body = NodeList),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "The registry is unavailable", body = ErrorBody),
    ))]
#[get("/nodes")]
pub(crate) async fn list_nodes(state: web::Data<ApiState>, _admin: Admin) -> Result<HttpResponse> {
    let items = state
        .discovery
        .live(state.options.node_ttl)
        .await
        .map_err(|e| ApiError::dependency("the node registry", &e))?;
    let items = same_cluster(&state.node_id, items);
    Ok(HttpResponse::Ok().json(NodeList {
        items,
        ttl_secs: state.options.node_ttl.as_secs(),
    }))
}

/// The dashboard's overview (also streamed at `/dashboard/events`).
#[utoipa::path(get, path = "/api/v1/admin/overview", tag = "operations",
    security(("admin" = [])),
    responses(
        (status = 200, description = "Nodes, tree, queues, sagas, dead letters", body = Overview),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    ))]
#[get("/admin/overview")]
pub(crate) async fn get_overview(
    state: web::Data<ApiState>,
    _admin: Admin,
) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(overview(&state).await))
}

/// What a full sync found.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SyncResult {
    /// Tokens compared.
    pub checked: u64,
    /// Tokens whose stored owner differed from the chain.
    pub drifted: u64,
    /// Repair events written.
    pub repaired: u64,
    /// Each drift found.
    #[schema(value_type = Vec<Object>)]
    pub drifts: serde_json::Value,
}

/// Runs a full sync now: every known token's owner on chain against the store; drift is
/// repaired through ordinary events.
#[utoipa::path(post, path = "/api/v1/chain/sync", tag = "operations",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The report", body = SyncResult),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 503, description = "No chain, or the RPC endpoint is unavailable", body = ErrorBody),
    ))]
#[post("/chain/sync")]
pub(crate) async fn chain_sync(state: web::Data<ApiState>, _admin: Admin) -> Result<HttpResponse> {
    let chain = state
        .chain
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("this node runs no chain"))?;
    let report = merit_chain::full_sync(&state.store, chain.chain.as_ref(), chain.confirmations)
        .await
        .map_err(|e| ApiError::dependency("the chain RPC or the store", &e))?;
    metrics::counter!("merit_chain_full_sync_drift_total").increment(report.drifted);
    tracing::info!(
        checked = report.checked,
        drifted = report.drifted,
        repaired = report.repaired,
        "full sync run by an operator"
    );
    Ok(HttpResponse::Ok().json(SyncResult {
        checked: report.checked,
        drifted: report.drifted,
        repaired: report.repaired,
        drifts: report
            .drifts
            .iter()
            .map(|d| {
                serde_json::json!({
                    "token": d.token.to_string(),
                    "stored": d.stored.map(|a| a.to_string()),
                    "on_chain": d.on_chain.map(|a| a.to_string()),
                    "repair": d.repair.to_string(),
                })
            })
            .collect(),
    }))
}

pub(crate) fn listener_json(s: &merit_chain::ListenerStatus) -> serde_json::Value {
    serde_json::json!({
        "checkpoint": s.checkpoint,
        "head": s.head,
        "lag": s.lag,
        "events_written": s.events_written,
        "reorgs": s.reorgs,
        "last_error": s.last_error,
    })
}

/// The node status for people: each service's state as one word (with its detail) and
/// its last change as a time.
fn status_json(status: &merit_supervisors::NodeStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(services) = value["services"].as_array_mut() {
        for service in services {
            let state = &service["state"];
            let word = state["state"].as_str().unwrap_or("unknown").to_string();
            let text = match state["detail"].as_str() {
                Some(detail) => format!("{word}: {detail}"),
                None => word,
            };
            service["state"] = text.into();
            if let Some(secs) = service["since"].as_i64() {
                service["since"] = chrono::DateTime::from_timestamp(secs, 0)
                    .map(|t| t.to_rfc3339())
                    .into();
            }
        }
    }
    value
}

/// A ticket for the dashboard's live feed.
#[derive(Serialize, ToSchema)]
pub(crate) struct StreamTicket {
    /// Opens `/dashboard/events?ticket=` once, on this node.
    pub ticket: String,
    /// When it stops being accepted (30 s after issue).
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl std::fmt::Debug for StreamTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamTicket")
            .field("ticket", &"***redacted***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A short-lived (30 s), single-use ticket that opens the dashboard's live feed
/// (`/dashboard/events?ticket=`) on this node, so the admin token never goes in a URL.
#[utoipa::path(post, path = "/api/v1/admin/stream-ticket", tag = "operations",
    security(("admin" = [])),
    responses(
        (status = 200, description = "The ticket", body = StreamTicket),
        (status = 401, description = "No or an invalid credential", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    ))]
#[post("/admin/stream-ticket")]
pub(crate) async fn stream_ticket(state: web::Data<ApiState>, _admin: Admin) -> HttpResponse {
    let (ticket, ttl) = state.guards.tickets.issue();
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(ttl).unwrap_or_else(|_| chrono::Duration::seconds(30));
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(StreamTicket { ticket, expires_at })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, cluster: &str) -> NodeInfo {
        NodeInfo {
            node_id: id.to_string(),
            address: "127.0.0.1:1".to_string(),
            version: "0".to_string(),
            started_at: chrono::Utc::now(),
            heartbeat_at: chrono::Utc::now(),
            healthy: true,
            shards: 0,
            owned: Vec::new(),
            cluster: cluster.to_string(),
        }
    }

    #[test]
    fn a_node_lists_only_its_own_clusters_nodes() {
        let all = vec![node("a", "vh1"), node("b", "vh2"), node("c", "vh1")];
        let ids = |nodes: Vec<NodeInfo>| nodes.into_iter().map(|n| n.node_id).collect::<Vec<_>>();
        assert_eq!(ids(same_cluster("a", all.clone())), ["a", "c"]);
        assert_eq!(ids(same_cluster("b", all.clone())), ["b"]);
        // Not registered yet: everything, rather than nothing.
        assert_eq!(ids(same_cluster("z", all)), ["a", "b", "c"]);
    }
}
