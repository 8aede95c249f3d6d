//! Service discovery: every node registers itself with a heartbeat that expires, so the
//! live ones can be listed and a dead one disappears within the TTL.
//!
//! With Redis, a node's record is the key `{prefix}node:{id}` set with `EX ttl` on every
//! heartbeat (Redis expires it: nothing to clean up). Without Redis, it is a row of
//! `nodes` upserted on every heartbeat, and readers skip rows older than the TTL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use merit_storage::{
    entities::node,
    sea_orm::{sea_query::OnConflict, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter},
    Store,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::ToSchema;

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Where its HTTP API listens.
    pub address: String,
    /// merit version.
    pub version: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Whether its supervision tree is healthy.
    pub healthy: bool,
    /// How many shards it owns (consumes).
    pub shards: u32,
    /// The shards it owns (`user.3`, ...), balanced over the live nodes.
    #[serde(default)]
    pub owned: Vec<String>,
    /// The RabbitMQ vhost whose shard queues it consumes: the nodes that share shards are
    /// those with the same vhost (several deployments may share one Redis).
    #[serde(default)]
    pub cluster: String,
}

/// Where nodes register.
#[derive(Clone)]
pub enum Discovery {
    /// Keys with a TTL in Redis.
    Redis {
        /// Connection (reconnects by itself).
        conn: redis::aio::ConnectionManager,
        /// Key prefix.
        prefix: String,
    },
    /// Rows in the database.
    Store(Store),
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Redis { .. } => "Discovery::Redis",
            Self::Store(_) => "Discovery::Store",
        })
    }
}

/// A discovery failure.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// Redis refused or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The database refused or is unreachable.
    #[error("database: {0}")]
    Db(#[from] merit_storage::sea_orm::DbErr),
}

impl Discovery {
    /// Registers Redis at `url` with keys under `prefix`, or the store when Redis cannot
    /// be reached at start.
    pub async fn redis_or_store(url: &str, prefix: &str, store: Store) -> Self {
        let conn = async {
            let client = redis::Client::open(url)?;
            tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager())
                .await
                .map_err(|_| redis::RedisError::from((redis::ErrorKind::Io, "connect timed out")))?
        };
        match conn.await {
            Ok(conn) => Self::Redis {
                conn,
                prefix: prefix.to_string(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable: nodes register in the database");
                Self::Store(store)
            }
        }
    }

    /// Writes `info` valid for `ttl`.
    pub async fn register(&self, info: &NodeInfo, ttl: Duration) -> Result<(), DiscoveryError> {
        match self {
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let body = serde_json::to_string(info).unwrap_or_default();
                redis::cmd("SET")
                    .arg(format!("{prefix}node:{}", info.node_id))
                    .arg(body)
                    .arg("EX")
                    .arg(ttl.as_secs().max(1))
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Self::Store(store) => {
                node::Entity::insert(node::ActiveModel {
                    node_id: Set(info.node_id.clone()),
                    info: Set(serde_json::to_value(info).unwrap_or_default()),
                    heartbeat_at: Set(info.heartbeat_at),
                })
                .on_conflict(
                    OnConflict::column(node::Column::NodeId)
                        .update_columns([node::Column::Info, node::Column::HeartbeatAt])
                        .to_owned(),
                )
                .exec(store.db())
                .await?;
            }
        }
        Ok(())
    }

    /// Removes `node_id` (a graceful stop).
    pub async fn deregister(&self, node_id: &str) -> Result<(), DiscoveryError> {
        match self {
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                redis::cmd("DEL")
                    .arg(format!("{prefix}node:{node_id}"))
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Self::Store(store) => {
                node::Entity::delete_by_id(node_id.to_string())
                    .exec(store.db())
                    .await?;
            }
        }
        Ok(())
    }

    /// The nodes whose last heartbeat is younger than `ttl`, by id.
    pub async fn live(&self, ttl: Duration) -> Result<Vec<NodeInfo>, DiscoveryError> {
        let mut nodes: Vec<NodeInfo> = match self {
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut keys: Vec<String> = Vec::new();
                let mut cursor: u64 = 0;
                loop {
                    let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}node:*"))
                        .arg("COUNT")
                        .arg(500)
                        .query_async(&mut conn)
                        .await?;
                    keys.extend(batch);
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                values
                    .into_iter()
                    .flatten()
                    .filter_map(|v| serde_json::from_str(&v).ok())
                    .collect()
            }
            Self::Store(store) => {
                let since = Utc::now()
                    - chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(15));
                node::Entity::find()
                    .filter(node::Column::HeartbeatAt.gt(since))
                    .all(store.db())
                    .await?
                    .into_iter()
                    .filter_map(|row| serde_json::from_value(row.info).ok())
                    .collect()
            }
        };
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    /// Heartbeats `info()` every `ttl / 3` until `shutdown`, then deregisters.
    pub async fn run_heartbeat(
        self,
        info: impl Fn() -> NodeInfo + Send + 'static,
        ttl: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let every = (ttl / 3).max(Duration::from_millis(200));
        let mut failing = false;
        loop {
            let current = info();
            match self.register(&current, ttl).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("node registration works again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "node registration failed; retrying");
                }
                Err(_) => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped(&mut shutdown) => {
                    if let Err(e) = self.deregister(&current.node_id).await {
                        tracing::warn!(error = %e, "node deregistration failed; it expires with its TTL");
                    }
                    return;
                }
            }
        }
    }
}

/// Resolves once `shutdown` says stop (or its sender is gone); holds no guard across awaits.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
