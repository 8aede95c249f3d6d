//! Dead letters as operators work through them: every message merit gave up on, recorded
//! from the dead-letter queue by id, with what was done with it.

use sea_orm::entity::prelude::*;

/// One dead letter.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letters")]
pub struct Model {
    /// Arrival order: pages are cut by it, so they are stable while more arrive.
    #[sea_orm(primary_key)]
    pub seq: i64,
    /// The dead letter's id (a UUID, text form); unique, so recording twice is a no-op.
    #[sea_orm(unique)]
    pub id: String,
    /// The routing key it was published with.
    pub routing_key: String,
    /// Reason class (`malformed`, `handler_error`, …).
    pub reason_class: String,
    /// What was wrong.
    pub reason: String,
    /// Handling attempts.
    pub attempts: i32,
    /// The body as kept (at most 64 KiB).
    pub body: Vec<u8>,
    /// The original body's size in bytes, when `body` was cut short.
    pub truncated_from: Option<i64>,
    /// The door it came in through: `producer` or `merit`.
    pub origin: String,
    /// The queue it was taken from.
    pub source_queue: String,
    /// The original message id.
    pub message_id: Option<String>,
    /// The original correlation id.
    pub correlation_id: Option<String>,
    /// The original application headers (a JSON object of strings).
    pub headers: Json,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTimeUtc,
    /// When it was recorded here.
    pub recorded_at: DateTimeUtc,
    /// `waiting`, `replayed` or `discarded`.
    pub state: String,
    /// When it was replayed or discarded.
    pub settled_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
