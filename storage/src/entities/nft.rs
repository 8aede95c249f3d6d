//! NFTs: owner and the chain position of the last applied change.

use sea_orm::entity::prelude::*;

/// A token as merit knows it.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nfts")]
pub struct Model {
    /// uint256 as a decimal string.
    #[sea_orm(primary_key, auto_increment = false)]
    pub token_id: String,
    /// Lowercase 0x owner; `None` once burned.
    pub owner: Option<String>,
    /// Benefit tier, when known.
    pub tier: Option<String>,
    /// The achievement it was minted for, when merit minted it.
    pub achievement_id: Option<String>,
    /// Burned.
    pub burned: bool,
    /// Block of the last applied change.
    pub last_block: i64,
    /// Log index of the last applied change.
    pub last_log_index: i64,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
