//! Achievements and their lifecycle: reserved, unlocked, revoked or failed.

use sea_orm::entity::prelude::*;

/// One unlock of one rule for one user.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "achievements")]
pub struct Model {
    /// Deterministic achievement id (uuid, text form).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Lowercase 0x address of the user.
    pub user: String,
    /// The rule met.
    pub rule_id: String,
    /// Config version the rule was evaluated under.
    pub rule_version: i64,
    /// Tier of the NFT it mints.
    pub tier: String,
    /// The token reserved / minted for it.
    pub token_id: Option<String>,
    /// `reserved`, `unlocked`, `revoked` or `failed`.
    pub state: String,
    /// The saga minting it, if started.
    pub saga_id: Option<String>,
    /// The correlation id of the event that unlocked it: its unlock saga runs under it.
    pub correlation_id: Option<String>,
    /// Why it was revoked or failed.
    pub reason: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last state change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
