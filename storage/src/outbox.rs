//! Reads and marks for the outbox relay. Rows are published in commit (`id`) order and
//! marked only after the broker confirmed them, so a crash in between republishes them:
//! at least once, with receivers' inboxes absorbing the duplicates.

use chrono::Utc;
use sea_orm::{
    sea_query::{Expr, Query},
    ColumnTrait, EntityName, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::{
    entities::outbox,
    error::Result,
    store::{exec, Store},
};

pub use crate::entities::outbox::Model as OutboxRow;

impl Store {
    /// Up to `limit` unpublished rows with `id > after`, oldest first.
    pub async fn pending_outbox(&self, after: i64, limit: u64) -> Result<Vec<OutboxRow>> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(outbox::Column::Id.gt(after))
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?)
    }

    /// Up to `limit` unpublished rows whose `id` lies in none of the inclusive ranges of
    /// `skip`, oldest first: what a relay with batches in flight (each spanning one range)
    /// may publish next. A row committed late inside a range is found once that range is
    /// no longer skipped. With `skip_created`, not the rows whose `created_at` lies in
    /// that inclusive range.
    pub async fn pending_outbox_outside(
        &self,
        skip: &[(i64, i64)],
        limit: u64,
        skip_created: Option<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)>,
    ) -> Result<Vec<OutboxRow>> {
        let mut query = outbox::Entity::find().filter(outbox::Column::PublishedAt.is_null());
        if let Some((from, to)) = skip_created {
            query = query.filter(outbox::Column::CreatedAt.not_between(from, to));
        }
        for &(first, last) in skip {
            query = query.filter(outbox::Column::Id.not_between(first, last));
        }
        Ok(query
            .order_by_asc(outbox::Column::Id)
            .limit(limit)
            .all(self.db())
            .await?)
    }

    /// Marks rows as confirmed by the broker.
    pub async fn mark_published(&self, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = ids.to_vec();
        self.write(move |txn| {
            Box::pin(async move {
                exec(
                    txn,
                    Query::update()
                        .table(outbox::Entity.table_ref())
                        .value(outbox::Column::PublishedAt, Utc::now())
                        .and_where(Expr::col(outbox::Column::Id).is_in(ids))
                        .and_where(Expr::col(outbox::Column::PublishedAt).is_null()),
                )
                .await
            })
        })
        .await
    }

    /// Number of rows waiting to be published (outbox lag).
    pub async fn outbox_backlog(&self) -> Result<u64> {
        Ok(outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .count(self.db())
            .await?)
    }
}
