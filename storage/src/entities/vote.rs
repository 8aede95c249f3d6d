//! Votes: one per user per proposal, with the weight it counted with.

use sea_orm::entity::prelude::*;

/// A vote as counted.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "votes")]
pub struct Model {
    /// Proposal id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub proposal_id: String,
    /// Lowercase 0x address of the voter.
    #[sea_orm(primary_key, auto_increment = false)]
    pub voter: String,
    /// `for`, `against` or `abstain`.
    pub choice: String,
    /// Weight counted, in weight units.
    pub weight: i64,
    /// Token ids whose boost this vote used (each counts once per proposal).
    pub boosts: Json,
    /// The event that cast it.
    pub event_id: String,
    /// When it was cast.
    pub cast_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
