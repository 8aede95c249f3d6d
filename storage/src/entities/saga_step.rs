//! The saga log: one row per (saga, step), the idempotency key of each step.

use sea_orm::entity::prelude::*;

/// One step of one saga.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "saga_steps")]
pub struct Model {
    /// Saga id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub saga_id: String,
    /// Step index.
    #[sea_orm(primary_key, auto_increment = false)]
    pub step: i32,
    /// Step name.
    pub name: String,
    /// `pending`, `running`, `done`, `failed`, `compensating`, `compensated`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i32,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Step output (e.g. a transaction hash), for resumption.
    pub output: Option<Json>,
    /// First attempt.
    pub started_at: Option<DateTimeUtc>,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
