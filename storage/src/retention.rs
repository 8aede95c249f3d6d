//! Retention: the bookkeeping tables — the inbox (event ids applied), the outbox (events
//! relayed) and each user's notification log — grow with every event, so a sweep deletes
//! what is older than its retention, a bounded chunk per statement (each its own short
//! transaction, so the sweep never holds locks the write path waits on for long).
//!
//! What a retention means:
//! - **inbox**: a redelivery of an event applied longer ago than this is no longer
//!   recognised as a duplicate. RabbitMQ redelivers within minutes and producers retry
//!   within their own window, so days are ample; the default is 30.
//! - **outbox**: only rows the broker confirmed (`published_at` set) are swept; a row
//!   still waiting is kept however old.
//! - **notifications**: a client reconnecting with `after=` older than the retention
//!   receives what is left; sequence numbers live in the user's actor state, so new
//!   notifications never reuse a swept number.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{
    sea_query::{Expr, Query, SelectStatement},
    EntityName, Iden,
};
use serde::Serialize;

use crate::{
    entities::{inbox, notification, outbox},
    error::Result,
    store::{exec, Store},
};

/// The pause between two full chunks of one sweep.
const CHUNK_PAUSE: Duration = Duration::from_millis(20);

/// How long each kind of bookkeeping row is kept; `None` keeps it for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Inbox rows, by `processed_at`.
    pub inbox: Option<Duration>,
    /// Published outbox rows, by `published_at`.
    pub outbox: Option<Duration>,
    /// Notifications, by `created_at`.
    pub notifications: Option<Duration>,
    /// Rows deleted per statement.
    pub chunk: u64,
}

/// Rows one sweep deleted, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Inbox rows.
    pub inbox: u64,
    /// Published outbox rows.
    pub outbox: u64,
    /// Notifications.
    pub notifications: u64,
}

impl Swept {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.inbox + self.outbox + self.notifications
    }
}

impl Store {
    /// Deletes every row older than its retention at `now`, chunk by chunk, until no
    /// chunk is full. Safe to run on several nodes at once: a row is deleted once.
    pub async fn sweep(&self, retention: &Retention, now: DateTime<Utc>) -> Result<Swept> {
        // A retention reaching back past what a timestamp can hold keeps everything.
        let before = |keep: Option<Duration>| {
            let keep = chrono::Duration::from_std(keep?).ok()?;
            now.checked_sub_signed(keep)
        };
        let chunk = retention.chunk.max(1);
        let mut swept = Swept::default();
        if let Some(before) = before(retention.inbox) {
            let key = [inbox::Column::Consumer, inbox::Column::EventId];
            let mut old = Query::select();
            old.columns(key)
                .from(inbox::Entity.table_ref())
                .and_where(Expr::col(inbox::Column::ProcessedAt).lt(before));
            swept.inbox = self.delete_chunks(inbox::Entity, &key, old, chunk).await?;
        }
        if let Some(before) = before(retention.outbox) {
            let key = [outbox::Column::Id];
            let mut old = Query::select();
            old.columns(key)
                .from(outbox::Entity.table_ref())
                .and_where(Expr::col(outbox::Column::PublishedAt).is_not_null())
                .and_where(Expr::col(outbox::Column::PublishedAt).lt(before));
            swept.outbox = self.delete_chunks(outbox::Entity, &key, old, chunk).await?;
        }
        if let Some(before) = before(retention.notifications) {
            let key = [notification::Column::User, notification::Column::Seq];
            let mut old = Query::select();
            old.columns(key)
                .from(notification::Entity.table_ref())
                .and_where(Expr::col(notification::Column::CreatedAt).lt(before));
            swept.notifications = self
                .delete_chunks(notification::Entity, &key, old, chunk)
                .await?;
        }
        Ok(swept)
    }

    /// `DELETE FROM table WHERE (key) IN (old LIMIT chunk)`, repeated until a chunk is not
    /// full, with a short pause between chunks so that a large backlog (the first sweep
    /// of a long-running deployment) leaves the write path room; returns the rows
    /// deleted.
    async fn delete_chunks<E: EntityName, C: Iden + Copy + Send + Sync + 'static>(
        &self,
        table: E,
        key: &[C],
        mut old: SelectStatement,
        chunk: u64,
    ) -> Result<u64> {
        let key_expr = Expr::tuple(key.iter().map(|c| Expr::col(*c).into()));
        let mut delete = Query::delete();
        delete
            .from_table(table.table_ref())
            .and_where(key_expr.in_subquery(old.limit(chunk).to_owned()));
        let mut total = 0;
        loop {
            let stmt = delete.clone();
            let n = self
                .write(move |txn| Box::pin(async move { exec(txn, &stmt).await }))
                .await?;
            total += n;
            if n < chunk {
                return Ok(total);
            }
            tokio::time::sleep(CHUNK_PAUSE).await;
        }
    }
}
