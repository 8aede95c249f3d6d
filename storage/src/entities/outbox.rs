//! The outbox: events committed with the turn that emitted them, published by the relay.

use sea_orm::entity::prelude::*;

/// One emitted event waiting to be (or already) published.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "outbox")]
pub struct Model {
    /// Commit order; the relay publishes in this order.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Event id (uuid, text form); unique, so re-emitting is a no-op.
    #[sea_orm(unique)]
    pub event_id: String,
    /// AMQP routing key (the event type).
    pub routing_key: String,
    /// The envelope JSON.
    pub payload: String,
    /// Extra AMQP headers.
    pub headers: Json,
    /// Written.
    pub created_at: DateTimeUtc,
    /// Confirmed by the broker; `None` while pending.
    pub published_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm; joins are explicit queries.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
