//! `nodes`: the service-discovery registry when no Redis is configured. A node upserts its
//! row on every heartbeat; readers treat rows older than the TTL as dead.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    /// Node id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub node_id: String,
    /// What the node reports about itself (address, version, started, shards, health).
    pub info: Json,
    /// Last heartbeat.
    pub heartbeat_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
