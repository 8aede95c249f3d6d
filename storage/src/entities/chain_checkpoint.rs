//! Chain listener checkpoints: the last block fully published per (chain, contract).

use sea_orm::entity::prelude::*;

/// How far the listener has read.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "chain_checkpoints")]
pub struct Model {
    /// `<chain id>:<contract address>`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Last block whose logs are all published.
    pub block_number: i64,
    /// Its hash (to detect a reorg below the checkpoint).
    pub block_hash: String,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
