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
    /// `running`, `compensating`, `completed`, `compensated` or `failed`.
    pub state: String,
    /// Index of the step being run or compensated.
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
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
