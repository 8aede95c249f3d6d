//! The inbox: event ids each consumer has applied. Its primary key is the idempotency check.

use sea_orm::entity::prelude::*;

/// One applied event for one consumer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "inbox")]
pub struct Model {
    /// Consumer name (e.g. `user`, `proposal`, `nft`, `saga`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub consumer: String,
    /// Event id (uuid, text form).
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    /// When it was applied.
    pub processed_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
