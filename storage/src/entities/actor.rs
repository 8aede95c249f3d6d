//! Actor snapshots: the state an actor is activated from, with its version for optimistic concurrency.

use sea_orm::entity::prelude::*;

/// One actor's persisted state. `version` is owned by the write path: it increases by one
/// per applied turn and a writer holding an older version is refused.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "actors")]
pub struct Model {
    /// `user`, `proposal` or `nft`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    /// The actor's key (address, proposal id, token id).
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Number of applied turns.
    pub version: i64,
    /// The actor's state, as the actor serialises it.
    pub state: Json,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
