//! Benefits: what a user's vote is worth now.

use sea_orm::entity::prelude::*;

/// A user's current vote-weight benefits.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "benefits")]
pub struct Model {
    /// Lowercase 0x address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user: String,
    /// Vote weight multiplier in basis points (10000 = 1x).
    pub multiplier_bps: i64,
    /// Token ids that contribute.
    pub boosting_nfts: Json,
    /// Config version used.
    pub config_version: i64,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
