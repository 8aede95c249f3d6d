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
//! 4. the outbox rows (ignoring an event id already there: re-emitting is a no-op). Once
//!    the transaction commits, the new rows go to this process's relay through the
//!    [`crate::OutboxFeed`].
//!
//! Every step is set-based: the group committer ([`crate::GroupCommitter`]) runs it once
//! for a whole batch of turns (one inbox insert, at most two snapshot statements, one
//! insert per projected entity from the turns' merged [`Rows`], one outbox insert), and
//! a lone turn goes through the same statements with a batch of one.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use merit_messages::{ActorKind, Envelope, EventId};
use sea_orm::{
    sea_query::{ArrayType, OnConflict, Query},
    ConnectionTrait, DatabaseTransaction, DbBackend, EntityName, EntityTrait, Statement,
    StatementBuilder, TransactionTrait, Value as SeaValue,
};
use serde_json::Value;

use crate::{
    entities::{actor, inbox, outbox},
    error::{Result, StorageError},
    outbox::OutboxRow,
    rows::Rows,
    shape::fixed_shape,
    store::{Store, TxFuture},
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

/// Key in an outbox row's headers holding the envelope's correlation id: the relay sends
/// it as the AMQP `correlation_id` property, not as a header.
pub const OUTBOX_CORRELATION: &str = "x-merit-correlation-id";

impl OutboxMessage {
    /// Adds `headers` to the row's AMQP headers (a trace context, say).
    pub fn with_headers(mut self, headers: &std::collections::HashMap<String, String>) -> Self {
        if let Value::Object(map) = &mut self.headers {
            for (name, value) in headers {
                map.insert(name.clone(), Value::String(value.clone()));
            }
        }
        self
    }

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
                    .chain([(
                        OUTBOX_CORRELATION.to_string(),
                        Value::String(envelope.correlation_id.to_string()),
                    )])
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
    /// Further events applied in the same turn, after `event_id`, each under its own inbox
    /// consumer (a batched turn: several queued messages of one actor, one state write).
    /// All of them are new, or the turn writes nothing.
    pub batched: Vec<(String, EventId)>,
    /// The actor's new state, or `None` when the event changes no state (still recorded).
    pub state: Option<StateWrite>,
    /// Events emitted.
    pub outbox: Vec<OutboxMessage>,
}

impl Turn {
    /// The turn's inbox rows: `(consumer, event id)`, the first event then the batched ones.
    pub fn inbox(&self) -> impl Iterator<Item = (&str, EventId)> {
        std::iter::once((self.consumer.as_str(), self.event_id))
            .chain(self.batched.iter().map(|(c, id)| (c.as_str(), *id)))
    }

    /// Fails with [`StorageError::PartlyApplied`] unless every inbox row of the turn is in
    /// `fresh` (the rows the inbox insert made): a batched turn whose events were partly
    /// applied before was computed from a state that counted them again.
    pub(crate) fn check_all_fresh(&self, fresh: &HashSet<(String, String)>) -> Result<()> {
        let applied: Vec<(String, EventId)> = self
            .inbox()
            .filter(|(c, id)| !fresh.contains(&(c.to_string(), id.to_string())))
            .map(|(c, id)| (c.to_string(), id))
            .collect();
        if applied.is_empty() {
            Ok(())
        } else {
            Err(StorageError::PartlyApplied { applied })
        }
    }
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
            Ok((TurnOutcome::Duplicate, _)) => {
                txn.rollback().await?;
                Ok(TurnOutcome::Duplicate)
            }
            Ok((applied, fed)) => {
                txn.commit().await?;
                self.outbox_feed().push(fed);
                Ok(applied)
            }
            Err(e) => {
                txn.rollback().await?;
                Err(e)
            }
        }
    }

    /// [`Store::commit_turn`] with the turn's projections given as [`Rows`].
    pub async fn commit_turn_rows(&self, turn: Turn, rows: Rows) -> Result<TurnOutcome> {
        self.commit_turn(turn, move |txn| {
            Box::pin(async move { rows.write(txn).await })
        })
        .await
    }

    /// Whether `consumer` has applied `event_id`.
    pub async fn is_processed(&self, consumer: &str, event_id: EventId) -> Result<bool> {
        let row = inbox::Entity::find_by_id((consumer.to_string(), event_id.to_string()))
            .one(self.db())
            .await?;
        Ok(row.is_some())
    }
}

pub(crate) async fn apply_turn<F>(
    txn: &DatabaseTransaction,
    turn: &Turn,
    project: F,
) -> Result<(TurnOutcome, Vec<OutboxRow>)>
where
    F: for<'c> FnOnce(&'c DatabaseTransaction) -> TxFuture<'c, ()> + Send,
{
    let now = Utc::now();
    let fresh = insert_inbox(txn, turn.inbox(), now).await?;
    if fresh.is_empty() {
        return Ok((TurnOutcome::Duplicate, Vec::new()));
    }
    turn.check_all_fresh(&fresh)?;
    compare_and_set(txn, turn.state.iter(), now).await?;
    project(txn).await?;
    let fed = insert_outbox_rows(txn, &turn.outbox, now).await?;
    Ok((
        TurnOutcome::Applied {
            version: turn.state.as_ref().map(StateWrite::next_version),
        },
        fed,
    ))
}

impl StateWrite {
    /// The version this write stores.
    pub(crate) fn next_version(&self) -> i64 {
        self.expected_version + 1
    }
}

/// Inserts the turns' inbox rows in one statement, ignoring conflicts; returns the
/// `(consumer, event id)` pairs that were new. A turn whose pair is missing was applied
/// before: it must write nothing else.
pub(crate) async fn insert_inbox<'t>(
    txn: &DatabaseTransaction,
    turns: impl IntoIterator<Item = (&'t str, EventId)>,
    now: DateTime<Utc>,
) -> Result<HashSet<(String, String)>> {
    let turns: Vec<(&str, EventId)> = turns.into_iter().collect();
    let mut fresh = HashSet::with_capacity(turns.len());
    // A statement carries at most 65,535 parameters on PostgreSQL (32,766 on SQLite).
    for chunk in turns.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table(inbox::Entity.table_ref()).columns([
            inbox::Column::Consumer,
            inbox::Column::EventId,
            inbox::Column::ProcessedAt,
        ]);
        for (consumer, event_id) in chunk {
            insert.values_panic([(*consumer).into(), event_id.to_string().into(), now.into()]);
        }
        insert
            .on_conflict(
                OnConflict::columns([inbox::Column::Consumer, inbox::Column::EventId])
                    .do_nothing()
                    .to_owned(),
            )
            .returning(
                Query::returning().columns([inbox::Column::Consumer, inbox::Column::EventId]),
            );
        fresh.extend(pairs(txn, &insert, chunk.len(), "consumer", "event_id").await?);
    }
    Ok(fresh)
}

/// Rows per multi-row statement: well under the databases' parameter limits for the
/// widest row written this way (five columns).
const MAX_ROWS_PER_STATEMENT: usize = 2_000;

/// Stores every write under its version check, in at most two statements (one insert
/// for actors never stored, one `UPDATE … FROM (VALUES …)` for the rest). A write whose
/// expected version is not the stored one fails the lot with
/// [`StorageError::VersionConflict`] for the first such write.
pub(crate) async fn compare_and_set<'w>(
    txn: &DatabaseTransaction,
    writes: impl IntoIterator<Item = &'w StateWrite>,
    now: DateTime<Utc>,
) -> Result<()> {
    let writes: Vec<&StateWrite> = writes.into_iter().collect();
    let (new, known): (Vec<&StateWrite>, Vec<&StateWrite>) =
        writes.iter().partition(|w| w.expected_version == 0);
    let mut stored: HashSet<(String, String)> = HashSet::new();
    if !new.is_empty() {
        let mut insert = Query::insert();
        insert.into_table(actor::Entity.table_ref()).columns([
            actor::Column::Kind,
            actor::Column::Key,
            actor::Column::Version,
            actor::Column::State,
            actor::Column::UpdatedAt,
        ]);
        for w in &new {
            insert.values_panic([
                w.kind.as_str().into(),
                w.key.clone().into(),
                w.next_version().into(),
                w.state.clone().into(),
                now.into(),
            ]);
        }
        insert
            .on_conflict(
                OnConflict::columns([actor::Column::Kind, actor::Column::Key])
                    .do_nothing()
                    .to_owned(),
            )
            .returning(Query::returning().columns([actor::Column::Kind, actor::Column::Key]));
        stored.extend(pairs(txn, &insert, new.len(), "kind", "key").await?);
    }
    if !known.is_empty() {
        let backend = txn.get_database_backend();
        let (source, values) = match backend {
            DbBackend::Postgres => unnest_writes(&known, now),
            _ => values_writes(&known, now),
        };
        let sql = format!(
            "UPDATE {t} SET version = v.column4, state = v.column5, updated_at = v.column6 \
             FROM {source} \
             WHERE {t}.kind = v.column1 AND {t}.key = v.column2 AND {t}.version = v.column3 \
             RETURNING {t}.kind AS kind, {t}.key AS key",
            t = actor::Entity.table_name(),
        );
        let found = txn
            .query_all(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        for row in found {
            stored.insert((row.try_get("", "kind")?, row.try_get("", "key")?));
        }
    }
    let Some(stale) = writes
        .iter()
        .find(|w| !stored.contains(&(w.kind.as_str().to_string(), w.key.clone())))
    else {
        return Ok(());
    };
    let found = actor::Entity::find_by_id((stale.kind.as_str().to_string(), stale.key.clone()))
        .one(txn)
        .await?
        .map(|r| r.version);
    Err(StorageError::VersionConflict {
        kind: stale.kind,
        key: stale.key.clone(),
        expected: stale.expected_version,
        found,
    })
}

/// The known actors' writes as `(VALUES …) AS v`, one row of six parameters per write
/// (`VALUES` columns are named column1..column6 on both PostgreSQL and SQLite).
fn values_writes(known: &[&StateWrite], now: DateTime<Utc>) -> (String, Vec<SeaValue>) {
    let mut values = Vec::with_capacity(known.len() * 6);
    let mut rows = Vec::with_capacity(known.len());
    for w in known {
        rows.push("(?, ?, ?, ?, ?, ?)");
        values.extend([
            SeaValue::from(w.kind.as_str()),
            w.key.clone().into(),
            w.expected_version.into(),
            w.next_version().into(),
            w.state.clone().into(),
            now.into(),
        ]);
    }
    (format!("(VALUES {}) AS v", rows.join(", ")), values)
}

/// The known actors' writes as six arrays unnested (PostgreSQL): one statement text for
/// any number of writes, so it stays prepared (see [`crate::shape`]).
fn unnest_writes(known: &[&StateWrite], now: DateTime<Utc>) -> (String, Vec<SeaValue>) {
    let array = |ty, cells: Vec<SeaValue>| SeaValue::Array(ty, Some(Box::new(cells)));
    let column = |f: &dyn Fn(&StateWrite) -> SeaValue| known.iter().map(|w| f(w)).collect();
    let values = vec![
        array(ArrayType::String, column(&|w| w.kind.as_str().into())),
        array(ArrayType::String, column(&|w| w.key.clone().into())),
        array(ArrayType::BigInt, column(&|w| w.expected_version.into())),
        array(ArrayType::BigInt, column(&|w| w.next_version().into())),
        array(ArrayType::Json, column(&|w| w.state.clone().into())),
        array(ArrayType::ChronoDateTimeUtc, column(&|_| now.into())),
    ];
    let source = "UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[], $5::jsonb[], \
                  $6::timestamptz[]) AS v(column1, column2, column3, column4, column5, column6)";
    (source.to_string(), values)
}

/// Inserts outbox rows in one statement (an event id already there is a no-op); returns
/// how many were new. The relay picks them up after the transaction commits.
pub async fn insert_outbox<'m>(
    txn: &DatabaseTransaction,
    messages: impl IntoIterator<Item = &'m OutboxMessage>,
    now: DateTime<Utc>,
) -> Result<u64> {
    Ok(insert_outbox_rows(txn, messages, now).await?.len() as u64)
}

/// [`insert_outbox`], returning the new rows as stored (with the ids the insert gave
/// them), for the [`crate::OutboxFeed`] once the transaction commits.
pub(crate) async fn insert_outbox_rows<'m>(
    txn: &DatabaseTransaction,
    messages: impl IntoIterator<Item = &'m OutboxMessage>,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxRow>> {
    let messages: Vec<&OutboxMessage> = messages.into_iter().collect();
    let mut rows = Vec::new();
    for chunk in messages.chunks(MAX_ROWS_PER_STATEMENT) {
        let mut insert = Query::insert();
        insert.into_table(outbox::Entity.table_ref()).columns([
            outbox::Column::EventId,
            outbox::Column::RoutingKey,
            outbox::Column::Payload,
            outbox::Column::Headers,
            outbox::Column::CreatedAt,
        ]);
        for m in chunk {
            insert.values_panic([
                m.event_id.to_string().into(),
                m.routing_key.clone().into(),
                m.payload.clone().into(),
                m.headers.clone().into(),
                now.into(),
            ]);
        }
        insert
            .on_conflict(
                OnConflict::column(outbox::Column::EventId)
                    .do_nothing()
                    .to_owned(),
            )
            .returning(Query::returning().columns([outbox::Column::Id, outbox::Column::EventId]));
        let stmt = fixed_shape(txn.get_database_backend().build(&insert), chunk.len());
        let mut ids: HashMap<String, i64> = HashMap::with_capacity(chunk.len());
        for row in txn.query_all(stmt).await? {
            ids.insert(row.try_get("", "event_id")?, row.try_get("", "id")?);
        }
        // In the order given: the order the relay publishes them in.
        for m in chunk {
            if let Some(id) = ids.remove(&m.event_id.to_string()) {
                rows.push(OutboxRow {
                    id,
                    event_id: m.event_id.to_string(),
                    routing_key: m.routing_key.clone(),
                    payload: m.payload.clone(),
                    headers: m.headers.clone(),
                    created_at: now,
                    published_at: None,
                });
            }
        }
    }
    Ok(rows)
}

/// Runs an insert of `rows` rows with a two-column `RETURNING` and collects the pairs.
async fn pairs(
    txn: &DatabaseTransaction,
    stmt: &impl StatementBuilder,
    rows: usize,
    first: &str,
    second: &str,
) -> Result<Vec<(String, String)>> {
    let backend = txn.get_database_backend();
    let rows = txn
        .query_all(fixed_shape(backend.build(stmt), rows))
        .await?;
    rows.into_iter()
        .map(|row| Ok((row.try_get("", first)?, row.try_get("", second)?)))
        .collect()
}
