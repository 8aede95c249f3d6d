//! Proposals: the queryable projection of ProposalActor state.

use sea_orm::entity::prelude::*;

/// A proposal with its schedule, status and running tally.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "proposals")]
pub struct Model {
    /// Proposal id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Lowercase 0x address of the creator.
    pub creator: String,
    /// Title.
    pub title: String,
    /// Body.
    pub description: String,
    /// Voting opens.
    pub starts_at: DateTimeUtc,
    /// Voting closes.
    pub ends_at: DateTimeUtc,
    /// Quorum, in weight units.
    pub quorum: i64,
    /// Pass threshold in basis points.
    pub threshold_bps: i32,
    /// `created`, `active`, `closed`, `succeeded`, `defeated`, `executed` or `cancelled`.
    pub status: String,
    /// Running tally (for, against, abstain, voters).
    pub tally: Json,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// The deadlines the timer emitted: 0 none, 1 open, 2 close (set by the timer only).
    pub deadlines_fired: i16,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
