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
    /// `pending`, `running`, `retrying`, `awaiting`, `done`, `failed`, `exhausted`,
    /// `compensating`, `compensation_awaiting`, `compensated`.
    pub state: String,
    /// Attempts of the action so far.
    pub attempts: i32,
    /// Last error, if any.
    pub last_error: Option<String>,
    /// Step output (e.g. a transaction hash), for resumption.
    pub output: Option<Json>,
    /// First attempt.
    pub started_at: Option<DateTimeUtc>,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// Attempts of the compensation so far.
    pub compensation_attempts: i32,
    /// What a compensation awaiting finality reported last (e.g. a burn's tx hash).
    pub compensation_output: Option<Json>,
    /// When the step is next due (retry backoff or re-poll), for the timeline.
    pub next_attempt_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
