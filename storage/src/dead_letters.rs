//! The dead-letter table: recording (idempotent by id), filtered keyset listing, settling
//! and the size cap. Listings are cut by `seq` (arrival order), never by offset, so a page
//! boundary does not move while dead letters arrive or are settled.

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, OnConflict, Query},
    ColumnTrait, Condition, EntityName, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::{
    entities::dead_letter::{self, Column},
    error::Result,
    store::{exec, Store},
};

pub use crate::entities::dead_letter::{ActiveModel as NewDeadLetter, Model as DeadLetterRow};

/// What became of a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterState {
    /// Recorded, not yet acted on.
    Waiting,
    /// Published again.
    Replayed,
    /// Dropped by an operator.
    Discarded,
}

impl DeadLetterState {
    /// Every state.
    pub const ALL: [Self; 3] = [Self::Waiting, Self::Replayed, Self::Discarded];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Replayed => "replayed",
            Self::Discarded => "discarded",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// Which dead letters a listing, count or bulk action covers; `None` fields match all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this state.
    pub state: Option<DeadLetterState>,
    /// Only this reason class.
    pub reason_class: Option<String>,
    /// Only this routing key.
    pub routing_key: Option<String>,
    /// Only this correlation id (the operation it belongs to).
    pub correlation_id: Option<String>,
    /// Dead-lettered at or after.
    pub since: Option<DateTime<Utc>>,
    /// Dead-lettered before.
    pub until: Option<DateTime<Utc>>,
}

impl DeadLetterFilter {
    fn condition(&self) -> Condition {
        let mut c = Condition::all();
        if let Some(state) = self.state {
            c = c.add(Column::State.eq(state.as_str()));
        }
        if let Some(class) = &self.reason_class {
            c = c.add(Column::ReasonClass.eq(class.as_str()));
        }
        if let Some(key) = &self.routing_key {
            c = c.add(Column::RoutingKey.eq(key.as_str()));
        }
        if let Some(correlation) = &self.correlation_id {
            c = c.add(Column::CorrelationId.eq(correlation.as_str()));
        }
        if let Some(since) = self.since {
            c = c.add(Column::DeadLetteredAt.gte(since));
        }
        if let Some(until) = self.until {
            c = c.add(Column::DeadLetteredAt.lt(until));
        }
        c
    }
}

impl Store {
    /// Records dead letters; one whose id is already recorded is left as it is. Returns
    /// how many were new.
    pub async fn record_dead_letters(&self, rows: Vec<NewDeadLetter>) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        self.write(move |txn| {
            Box::pin(async move {
                Ok(dead_letter::Entity::insert_many(rows)
                    .on_conflict(OnConflict::column(Column::Id).do_nothing().to_owned())
                    .exec_without_returning(txn)
                    .await?)
            })
        })
        .await
    }

    /// Up to `limit` dead letters matching `filter` with `seq > after`, in arrival order.
    pub async fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<DeadLetterRow>> {
        Ok(dead_letter::Entity::find()
            .filter(filter.condition())
            .filter(Column::Seq.gt(after))
            .order_by_asc(Column::Seq)
            .limit(limit)
            .all(self.db())
            .await?)
    }

    /// How many dead letters match `filter`.
    pub async fn count_dead_letters(&self, filter: &DeadLetterFilter) -> Result<u64> {
        Ok(dead_letter::Entity::find()
            .filter(filter.condition())
            .count(self.db())
            .await?)
    }

    /// Dead letter `id`.
    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetterRow>> {
        Ok(dead_letter::Entity::find()
            .filter(Column::Id.eq(id))
            .one(self.db())
            .await?)
    }

    /// Moves the waiting ones among `ids` to `to`, stamped now; returns how many moved.
    /// One already settled is left alone, so settling twice is a no-op.
    pub async fn settle_dead_letters(&self, ids: Vec<String>, to: DeadLetterState) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.write(move |txn| {
            Box::pin(async move {
                exec(
                    txn,
                    Query::update()
                        .table(dead_letter::Entity.table_ref())
                        .value(Column::State, to.as_str())
                        .value(Column::SettledAt, Utc::now())
                        .and_where(Expr::col(Column::Id).is_in(ids))
                        .and_where(Expr::col(Column::State).eq(DeadLetterState::Waiting.as_str())),
                )
                .await
            })
        })
        .await
    }

    /// Keeps the table at `keep` rows at most: deletes the oldest settled rows first, then
    /// the oldest waiting ones (as the queue's own bound drops its head). Returns how many
    /// waiting dead letters were dropped.
    pub async fn trim_dead_letters(&self, keep: u64) -> Result<u64> {
        let total = dead_letter::Entity::find().count(self.db()).await?;
        let mut excess = total.saturating_sub(keep);
        let mut dropped_waiting = 0;
        for settled in [true, false] {
            if excess == 0 {
                break;
            }
            let state = Expr::col(Column::State);
            let which = if settled {
                state.ne(DeadLetterState::Waiting.as_str())
            } else {
                state.eq(DeadLetterState::Waiting.as_str())
            };
            let deleted = self
                .write(move |txn| {
                    Box::pin(async move {
                        exec(
                            txn,
                            Query::delete()
                                .from_table(dead_letter::Entity.table_ref())
                                .and_where(
                                    Expr::col(Column::Seq).in_subquery(
                                        Query::select()
                                            .column(Column::Seq)
                                            .from(dead_letter::Entity.table_ref())
                                            .and_where(which)
                                            .order_by(Column::Seq, sea_orm::Order::Asc)
                                            .limit(excess)
                                            .to_owned(),
                                    ),
                                ),
                        )
                        .await
                    })
                })
                .await?;
            excess = excess.saturating_sub(deleted);
            if !settled {
                dropped_waiting = deleted;
            }
        }
        Ok(dropped_waiting)
    }
}
