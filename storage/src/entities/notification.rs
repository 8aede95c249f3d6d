//! `notifications`: each user's notification log, written by the UserActor in the turn
//! that caused it. `seq` is dense per user (1, 2, 3, …), so a client resuming after `n`
//! reads exactly what it missed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    /// Lowercase 0x address.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user: String,
    /// Position in the user's log, from 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    /// The event it reports.
    pub event_id: String,
    /// The event type, e.g. `achievement.unlocked`.
    pub kind: String,
    /// The event's payload.
    pub payload: Json,
    /// When the event occurred.
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
