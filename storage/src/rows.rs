//! Projection rows: what a turn writes to the read models (users, votes, proposals,
//! NFTs, ...), as data rather than as statements.
//!
//! An actor describes its projections as rows of sea-orm active models, each entity with
//! its one conflict rule. The group committer ([`crate::GroupCommitter`]) merges the rows
//! of every turn in a batch by entity and writes each entity's rows in one multi-row
//! statement: a batch of K user turns writes its K user rows with one `INSERT … ON
//! CONFLICT`, not K. A lone turn goes through the same path with a batch of one. On
//! PostgreSQL the statement takes one array per column ([`crate::shape`]), so its text is
//! the same for every batch size and stays prepared.
//!
//! Rules a caller keeps (they are what make merging safe):
//! - one conflict rule per entity: every row of entity `E` is added with the same
//!   `OnConflict` (or none), and with the same columns set;
//! - within one batch a row key is written by one turn only. Actor turns guarantee it:
//!   each projection row belongs to one actor, and an actor has one turn in flight. If it
//!   were broken, PostgreSQL would refuse the statement and the batch would fall back to
//!   committing its turns one by one, each with the outcome it would have had alone.

use std::any::{Any, TypeId};

use sea_orm::{
    sea_query::OnConflict, ActiveModelTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    Iterable, QueryTrait,
};

use crate::{error::Result, shape::fixed_shape, store::TxFuture};

/// The parameters one statement may carry, kept well under PostgreSQL's 65,535 and
/// SQLite's 32,766.
const MAX_PARAMS_PER_STATEMENT: usize = 30_000;

/// A turn's (or a batch's) projection rows, grouped by entity in first-added order.
#[derive(Default)]
pub struct Rows {
    sets: Vec<Box<dyn RowSet>>,
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rows")
            .field("entities", &self.sets.len())
            .field("rows", &self.len())
            .finish()
    }
}

impl Rows {
    /// No rows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `model` to its entity's insert. `conflict` is the entity's conflict rule
    /// (`None` for a plain insert); the first row of an entity fixes it for the rest.
    pub fn insert<A>(&mut self, model: A, conflict: Option<OnConflict>)
    where
        A: ActiveModelTrait + Send + Sync + 'static,
    {
        self.set_mut::<A>(conflict).models.push(model);
    }

    /// Adds `models` to their entity's insert (see [`Rows::insert`]).
    pub fn insert_many<A>(
        &mut self,
        models: impl IntoIterator<Item = A>,
        conflict: Option<OnConflict>,
    ) where
        A: ActiveModelTrait + Send + Sync + 'static,
    {
        self.set_mut::<A>(conflict).models.extend(models);
    }

    /// Appends a copy of `other`'s rows, entity by entity.
    pub fn extend_from(&mut self, other: &Rows) {
        for set in &other.sets {
            match self
                .sets
                .iter_mut()
                .find(|mine| mine.entity() == set.entity())
            {
                Some(mine) => mine.extend_from(set.as_ref()),
                None => self.sets.push(set.clone_set()),
            }
        }
    }

    /// How many rows, over all entities.
    pub fn len(&self) -> usize {
        self.sets.iter().map(|s| s.len()).sum()
    }

    /// Whether there is no row to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every row in `txn`: one statement per entity (more only past the
    /// parameter limit).
    pub async fn write(&self, txn: &DatabaseTransaction) -> Result<()> {
        for set in &self.sets {
            set.write(txn).await?;
        }
        Ok(())
    }

    fn set_mut<A>(&mut self, conflict: Option<OnConflict>) -> &mut Set<A>
    where
        A: ActiveModelTrait + Send + Sync + 'static,
    {
        let at = match self
            .sets
            .iter()
            .position(|s| s.entity() == TypeId::of::<A>())
        {
            Some(at) => at,
            None => {
                self.sets.push(Box::new(Set::<A> {
                    models: Vec::new(),
                    conflict,
                }));
                self.sets.len() - 1
            }
        };
        self.sets[at]
            .as_any_mut()
            .downcast_mut::<Set<A>>()
            .expect("a set is keyed by its own type")
    }
}

/// One entity's rows and its conflict rule.
struct Set<A> {
    models: Vec<A>,
    conflict: Option<OnConflict>,
}

/// [`Set`] with its entity type erased, so that one [`Rows`] holds many entities.
trait RowSet: Send + Sync {
    fn entity(&self) -> TypeId;
    fn len(&self) -> usize;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn clone_set(&self) -> Box<dyn RowSet>;
    /// Appends copies of `other`'s rows; `other` is of the same entity.
    fn extend_from(&mut self, other: &dyn RowSet);
    fn write<'c>(&'c self, txn: &'c DatabaseTransaction) -> TxFuture<'c, ()>;
}

impl<A> RowSet for Set<A>
where
    A: ActiveModelTrait + Send + Sync + 'static,
{
    fn entity(&self) -> TypeId {
        TypeId::of::<A>()
    }

    fn len(&self) -> usize {
        self.models.len()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn clone_set(&self) -> Box<dyn RowSet> {
        Box::new(Set {
            models: self.models.clone(),
            conflict: self.conflict.clone(),
        })
    }

    fn extend_from(&mut self, other: &dyn RowSet) {
        let other = other
            .as_any()
            .downcast_ref::<Set<A>>()
            .expect("sets are merged by entity type");
        self.models.extend(other.models.iter().cloned());
    }

    fn write<'c>(&'c self, txn: &'c DatabaseTransaction) -> TxFuture<'c, ()> {
        Box::pin(async move {
            let columns = <A::Entity as EntityTrait>::Column::iter().count().max(1);
            let per_statement = (MAX_PARAMS_PER_STATEMENT / columns).max(1);
            for chunk in self.models.chunks(per_statement) {
                let mut insert = <A::Entity as EntityTrait>::insert_many(chunk.iter().cloned());
                if let Some(conflict) = &self.conflict {
                    insert = insert.on_conflict(conflict.clone());
                }
                let stmt = txn.get_database_backend().build(&insert.into_query());
                txn.execute(fixed_shape(stmt, chunk.len())).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use sea_orm::{ActiveValue::Set as SetValue, EntityTrait, PaginatorTrait, TransactionTrait};

    use super::*;
    use crate::{
        entities::{inbox, user},
        store::{Store, StoreOptions},
    };

    fn user_row(address: &str, votes: i64) -> user::ActiveModel {
        user::ActiveModel {
            address: SetValue(address.to_string()),
            proposals_created: SetValue(0),
            votes_cast: SetValue(votes),
            counters: SetValue(serde_json::json!({})),
            first_seen_at: SetValue(Utc::now()),
            last_active_at: SetValue(Utc::now()),
        }
    }

    fn upsert() -> Option<OnConflict> {
        Some(
            OnConflict::column(user::Column::Address)
                .update_columns([user::Column::VotesCast])
                .to_owned(),
        )
    }

    #[tokio::test]
    async fn rows_of_many_turns_merge_by_entity_and_upsert() {
        let store = Store::connect("sqlite::memory:", &StoreOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        let mut first = Rows::new();
        first.insert(user_row("0xa", 1), upsert());
        let mut second = Rows::new();
        second.insert(user_row("0xb", 1), upsert());
        second.insert(
            inbox::ActiveModel {
                consumer: SetValue("x".into()),
                event_id: SetValue("e".into()),
                processed_at: SetValue(Utc::now()),
            },
            None,
        );
        let mut merged = Rows::new();
        merged.extend_from(&first);
        merged.extend_from(&second);
        assert_eq!(merged.sets.len(), 2, "one set per entity");
        assert_eq!(merged.len(), 3);

        let txn = store.db().begin().await.expect("begin");
        merged.write(&txn).await.expect("write");
        // A later turn's row replaces the columns its conflict rule names.
        let mut later = Rows::new();
        later.insert(user_row("0xa", 7), upsert());
        later.write(&txn).await.expect("upsert");
        txn.commit().await.expect("commit");

        assert_eq!(
            user::Entity::find().count(store.db()).await.expect("count"),
            2
        );
        let a = user::Entity::find_by_id("0xa".to_string())
            .one(store.db())
            .await
            .expect("read")
            .expect("row");
        assert_eq!(a.votes_cast, 7);
        assert_eq!(
            inbox::Entity::find()
                .count(store.db())
                .await
                .expect("count"),
            1
        );
    }
}
