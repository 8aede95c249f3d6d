//! The voters' held NFTs: read through the benefits cache (L1 → L2 → the `benefits`
//! projection), one shared database read per turn for the voters the cache misses, and
//! the cache warm-up at start.

use std::{collections::HashMap, sync::Arc};

use futures::future::{BoxFuture, FutureExt, Shared};
use merit_storage::{
    cache::CacheKey,
    entities::benefit,
    sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect},
    Store,
};

use crate::{domain::Services, user::HeldNfts};

/// Reads a user's held NFTs: L1 → L2 → the `benefits` projection. A user with no row holds
/// nothing (and that is cached too: most voters hold no NFT).
pub async fn load_held(
    store: &Store,
    services: &Services,
    user: &str,
) -> merit_storage::Result<HeldNfts> {
    load_held_from(services, user, &held_reads(store, vec![user.to_string()])).await
}

/// The database reads of a turn's voters' held NFTs: one query for all of them, run
/// only if some voter misses the cache, and then at most once.
pub(super) type HeldReads =
    Shared<BoxFuture<'static, Result<Arc<HashMap<String, HeldNfts>>, ReadFailed>>>;

/// Why the shared read failed, as each voter's read reports it (a database error is not
/// `Clone`): an outage stays an outage, so the turn waits it out instead of spending
/// attempts, as it would have on a read of its own.
#[derive(Debug, Clone)]
pub(super) struct ReadFailed {
    unavailable: bool,
    reason: String,
}

impl ReadFailed {
    pub(super) fn new(e: &merit_storage::StorageError) -> Self {
        let unavailable =
            matches!(e, merit_storage::StorageError::Db(db) if crate::shell::is_unavailable(db));
        Self {
            unavailable,
            reason: e.to_string(),
        }
    }

    pub(super) fn error(self) -> merit_storage::StorageError {
        use merit_storage::sea_orm::{DbErr, RuntimeErr};
        merit_storage::StorageError::Db(if self.unavailable {
            DbErr::Conn(RuntimeErr::Internal(self.reason))
        } else {
            DbErr::Custom(self.reason)
        })
    }
}

pub(super) fn held_reads(store: &Store, users: Vec<String>) -> HeldReads {
    let db = store.db().clone();
    async move {
        read_held_many(&db, users)
            .await
            .map(Arc::new)
            .map_err(|e| ReadFailed::new(&e))
    }
    .boxed()
    .shared()
}

/// [`load_held`] whose database tier is the turn's shared read.
pub(super) async fn load_held_from(
    services: &Services,
    user: &str,
    reads: &HeldReads,
) -> merit_storage::Result<HeldNfts> {
    let key = CacheKey::Benefits(user.to_string());
    let (reads, id) = (reads.clone(), user.to_string());
    let held = services
        .cache
        .get_or_load(&key, move || async move {
            match reads.await {
                Ok(held) => Ok(Some(held.get(&id).cloned().unwrap_or_default())),
                Err(failed) => Err(failed.error()),
            }
        })
        .await?;
    Ok(held.unwrap_or_default())
}

/// The `benefits` projection's held NFTs of `users` (a user with no row is left out).
async fn read_held_many(
    db: &DatabaseConnection,
    users: Vec<String>,
) -> merit_storage::Result<HashMap<String, HeldNfts>> {
    let mut held = HashMap::with_capacity(users.len());
    for chunk in users.chunks(1_000) {
        let rows: Vec<(String, serde_json::Value)> = benefit::Entity::find()
            .select_only()
            .column(benefit::Column::User)
            .column(benefit::Column::BoostingNfts)
            .filter(benefit::Column::User.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(db)
            .await?;
        for (user, tokens) in rows {
            let tokens = serde_json::from_value(tokens).unwrap_or_default();
            held.insert(user, HeldNfts { tokens });
        }
    }
    Ok(held)
}

/// The database tier of the benefits cache: the `benefits` projection's held NFTs.
async fn read_held(
    db: DatabaseConnection,
    user: String,
) -> merit_storage::Result<Option<HeldNfts>> {
    let row = benefit::Entity::find_by_id(user).one(&db).await?;
    let tokens = row
        .and_then(|r| serde_json::from_value(r.boosting_nfts).ok())
        .unwrap_or_default();
    Ok(Some(HeldNfts { tokens }))
}

/// Loads the benefits of the `limit` most recently active users into the cache (all
/// tiers); returns how many were cached. Failures only cost a cold read later.
pub async fn warm_benefits(store: &Store, services: &Services, limit: u64) -> usize {
    use merit_storage::{entities::user, sea_orm::QueryOrder};
    let users: Vec<String> = match user::Entity::find()
        .select_only()
        .column(user::Column::Address)
        .order_by_desc(user::Column::LastActiveAt)
        .limit(limit)
        .into_tuple()
        .all(store.db())
        .await
    {
        Ok(users) => users,
        Err(e) => {
            tracing::warn!(error = %e, "cache warm-up skipped: cannot list active users");
            return 0;
        }
    };
    let keys = users.into_iter().map(CacheKey::Benefits).collect();
    let db = store.db().clone();
    let report = services
        .cache
        .warm(keys, move |key| {
            let db = db.clone();
            async move {
                match key {
                    CacheKey::Benefits(id) => read_held(db, id).await,
                    CacheKey::UserProfile(_) => Ok(None),
                }
            }
        })
        .await;
    report.cached
}
