//! Dynamic config versions: rules, tiers and limits, append-only.

use sea_orm::entity::prelude::*;

/// One numbered version of the dynamic config.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "config_versions")]
pub struct Model {
    /// Version number, increasing.
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    /// The whole dynamic config document.
    pub document: Json,
    /// Who made it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// When a rollback, the version restored.
    pub rollback_of: Option<i64>,
    /// Made.
    pub created_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
