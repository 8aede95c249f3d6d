//! Users: the queryable projection of UserActor state.

use sea_orm::entity::prelude::*;

/// A user (wallet) and their governance behaviour counters.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Lowercase 0x address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub address: String,
    /// Proposals created.
    pub proposals_created: i64,
    /// Votes cast.
    pub votes_cast: i64,
    /// Other counters the achievement rules use (streaks, passed proposals, ...).
    pub counters: Json,
    /// First event seen.
    pub first_seen_at: DateTimeUtc,
    /// Last event seen.
    pub last_active_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
