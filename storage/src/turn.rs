//! The actor write path: one transaction per turn holding the inbox row (idempotency),
//! the actor's new state under an optimistic version check, the actor's projections and
//! the events it emits (outbox). Either all of it commits or none of it does.
//!
//! Order inside the transaction, and why:
//! 1. insert `(consumer, event_id)` into the inbox, ignoring a conflict. Zero rows means
//!    the event was applied before: roll back and report [`TurnOutcome::Duplicate`].
//!    Being the first statement also makes the transaction a writer at once, so SQLite
//!    never upgrades a read snapshot (no deferred-transaction deadlock across processes).
//! 2. compare-and-set the actor snapshot: `version = expected + 1 WHERE version = expected`
//!    (insert when `expected == 0`). Zero rows means a stale writer:
//!    [`StorageError::VersionConflict`], rolled back. On PostgreSQL this also takes the row
//!    lock that serialises concurrent writers of one actor.
//! 3. the caller's projection writes (users, votes, ...), in the same transaction.
//! 4. the outbox rows (ignoring an event id already there: re-emitting is a no-op).

use chrono::Utc;
use merit_messages::{ActorKind, Envelope, EventId};
use sea_orm::{
    sea_query::{Expr, OnConflict, Query},
    DatabaseTransaction, EntityName, EntityTrait, TransactionTrait,
};
use serde_json::Value;

use crate::{
    entities::{actor, inbox, outbox},
    error::{Result, StorageError},
    store::{exec, Store, TxFuture},
};

/// A new actor state to store with its version check.
#[derive(Debug, Clone)]
pub struct StateWrite {
    /// Actor kind.
    pub kind: ActorKind,
    /// Actor key.
    pub key: String,
    /// The version the actor loaded (0 for an actor never stored).
    pub expected_version: i64,
    /// The new state.
    pub state: Value,
}

/// An event to publish once the turn commits.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// The event id (unique in the outbox).
    pub event_id: EventId,
    /// AMQP routing key.
    pub routing_key: String,
    /// The envelope JSON.
    pub payload: String,
    /// Extra AMQP headers (string values).
    pub headers: Value,
}

impl OutboxMessage {
    /// The outbox row for an envelope, routed by its type.
    pub fn from_envelope(envelope: &Envelope) -> Self {
        Self {
            event_id: envelope.id,
            routing_key: envelope.event_type().as_str().to_string(),
            payload: String::from_utf8(envelope.to_json()).expect("serde_json writes UTF-8"),
            headers: Value::Object(
                envelope
                    .routing_headers()
                    .into_iter()
                    .map(|(h, key)| (h.to_string(), Value::String(key)))
                    .collect(),
            ),
        }
    }
}

/// One actor turn: the event applied, and what it changes.
#[derive(Debug, Clone)]
pub struct Turn {
    /// Who applies it (`user`, `proposal`, `nft`, `saga`, ...): the inbox is per consumer,
    /// so one event can be applied once by each of several actor kinds.
    pub consumer: String,
    /// The event applied.
    pub event_id: EventId,
    /// The actor's new state, or `None` when the event changes no state (still recorded).
    pub state: Option<StateWrite>,
    /// Events emitted.
    pub outbox: Vec<OutboxMessage>,
}

/// What a turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnOutcome {
    /// Committed; the actor is now at `version` (unchanged when no state was written).
    Applied {
        /// The stored version after the turn (`None` when the turn wrote no state).
        version: Option<i64>,
    },
    /// The event id was already in this consumer's inbox: nothing was changed.
    Duplicate,
}

/// A projection-writing closure that does nothing, for turns with no projections.
pub fn no_projection(_: &DatabaseTransaction) -> TxFuture<'_, ()> {
    Box::pin(async { Ok(()) })
}

impl Store {
    /// Applies one turn atomically (see the module docs for the exact order).
    ///
    /// `project` writes the actor's projections inside the same transaction; an error from
    /// it rolls back the whole turn, inbox row included, so the event can be retried.
    pub async fn commit_turn<F>(&self, turn: Turn, project: F) -> Result<TurnOutcome>
    where
        F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, ()> + Send,
    {
        let _gate = self.lock_writes().await;
        let txn = self.db().begin().await?;
        match apply_turn(&txn, &turn, project).await {
            Ok(TurnOutcome::Duplicate) => {
                txn.rollback().await?;
                Ok(TurnOutcome::Duplicate)
            }
            Ok(applied) => {
                txn.commit().await?;
                if !turn.outbox.is_empty() {
                    self.outbox_signal().notify_one();
                }
                Ok(applied)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// Whether `consumer` has applied `event_id`.
    pub async fn is_processed(&self, consumer: &str, event_id: EventId) -> Result<bool> {
        let row = inbox::Entity::find_by_id((consumer.to_string(), event_id.to_string()))
            .one(self.db())
            .await?;
        Ok(row.is_some())
    }

    /// Loads an actor's snapshot: `(version, state)`, or `None` for an actor never stored.
    pub async fn load_actor(&self, kind: ActorKind, key: &str) -> Result<Option<(i64, Value)>> {
        let row = actor::Entity::find_by_id((kind.as_str().to_string(), key.to_string()))
            .one(self.db())
            .await?;
        Ok(row.map(|r| (r.version, r.state)))
    }
}

pub(crate) async fn apply_turn<F>(
    txn: &DatabaseTransaction,
    turn: &Turn,
    project: F,
) -> Result<TurnOutcome>
where
    F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, ()> + Send,
{
    let now = Utc::now();
    let inserted = exec(
        txn,
        Query::insert()
            .into_table(inbox::Entity.table_ref())
            .columns([
                inbox::Column::Consumer,
                inbox::Column::EventId,
                inbox::Column::ProcessedAt,
            ])
            .values_panic([
                turn.consumer.clone().into(),
                turn.event_id.to_string().into(),
                now.into(),
            ])
            .on_conflict(
                OnConflict::columns([inbox::Column::Consumer, inbox::Column::EventId])
                    .do_nothing()
                    .to_owned(),
            ),
    )
    .await?;
    if inserted == 0 {
        return Ok(TurnOutcome::Duplicate);
    }

    let version = match &turn.state {
        Some(write) => Some(compare_and_set(txn, write).await?),
        None => None,
    };

    project(txn).await?;

    if !turn.outbox.is_empty() {
        let mut insert = Query::insert();
        insert.into_table(outbox::Entity.table_ref()).columns([
            outbox::Column::EventId,
            outbox::Column::RoutingKey,
            outbox::Column::Payload,
            outbox::Column::Headers,
            outbox::Column::CreatedAt,
        ]);
        for m in &turn.outbox {
            insert.values_panic([
                m.event_id.to_string().into(),
                m.routing_key.clone().into(),
                m.payload.clone().into(),
                m.headers.clone().into(),
                now.into(),
            ]);
        }
        insert.on_conflict(
            OnConflict::column(outbox::Column::EventId)
                .do_nothing()
                .to_owned(),
        );
        exec(txn, &insert).await?;
    }
    Ok(TurnOutcome::Applied { version })
}

async fn compare_and_set(txn: &DatabaseTransaction, write: &StateWrite) -> Result<i64> {
    let next = write.expected_version + 1;
    let kind = write.kind.as_str();
    let changed = if write.expected_version == 0 {
        exec(
            txn,
            Query::insert()
                .into_table(actor::Entity.table_ref())
                .columns([
                    actor::Column::Kind,
                    actor::Column::Key,
                    actor::Column::Version,
                    actor::Column::State,
                    actor::Column::UpdatedAt,
                ])
                .values_panic([
                    kind.into(),
                    write.key.clone().into(),
                    next.into(),
                    write.state.clone().into(),
                    Utc::now().into(),
                ])
                .on_conflict(
                    OnConflict::columns([actor::Column::Kind, actor::Column::Key])
                        .do_nothing()
                        .to_owned(),
                ),
        )
        .await?
    } else {
        exec(
            txn,
            Query::update()
                .table(actor::Entity.table_ref())
                .value(actor::Column::Version, next)
                .value(actor::Column::State, write.state.clone())
                .value(actor::Column::UpdatedAt, Utc::now())
                .and_where(Expr::col(actor::Column::Kind).eq(kind))
                .and_where(Expr::col(actor::Column::Key).eq(write.key.as_str()))
                .and_where(Expr::col(actor::Column::Version).eq(write.expected_version)),
        )
        .await?
    };
    if changed == 1 {
        return Ok(next);
    }
    let found = actor::Entity::find_by_id((kind.to_string(), write.key.clone()))
        .one(txn)
        .await?
        .map(|r| r.version);
    Err(StorageError::VersionConflict {
        kind: write.kind,
        key: write.key.clone(),
        expected: write.expected_version,
        found,
    })
}
