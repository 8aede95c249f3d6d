//! Sagas: one row per saga instance.

use sea_orm::entity::prelude::*;

/// A saga instance and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sagas")]
pub struct Model {
    /// Saga id (uuid, text form; deterministic from what started it).
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// Saga kind (`achievement_unlock`, ...).
    pub kind: String,
    /// `running`, `compensating`, `completed`, `compensated`, `failed` (could not run:
    /// unknown kind, unreadable data) or `stuck` (a compensation gave up: needs an operator).
    pub state: String,
    /// Index of the step being run or compensated (-1: compensation has nothing left).
    pub current_step: i32,
    /// The saga's data.
    pub data: Json,
    /// Correlation id of the request that started it.
    pub correlation_id: String,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Started.
    pub created_at: DateTimeUtc,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// The node driving it now (a lease; `None` when nobody is).
    pub lease_owner: Option<String>,
    /// Until when `lease_owner` holds it; after that any node may claim it.
    pub lease_until: Option<DateTimeUtc>,
    /// Not to be driven before this (retry backoff, re-poll of a step awaiting finality).
    pub next_attempt_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
